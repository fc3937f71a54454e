import { parseArgs } from 'node:util';

/** A usage error: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

type OptionKind = 'string' | 'boolean' | 'int' | 'number';

export interface OptionSpec {
  kind: OptionKind;
  description: string;
  /** For 'int': the smallest allowed value (default 1). */
  min?: number;
  max?: number;
  choices?: readonly string[];
  placeholder?: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  options: Record<string, OptionSpec>;
  positionals?: { name: string; required: boolean }[];
}

export type ParsedOptions = Record<string, string | boolean | number | undefined>;

export interface Parsed {
  options: ParsedOptions;
  positionals: string[];
}

/** Parses and validates argv for one command; every problem is a UsageError naming the option. */
export function parseCommand(spec: CommandSpec, argv: string[]): Parsed {
  const config: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const [name, option] of Object.entries(spec.options)) {
    config[name] = { type: option.kind === 'boolean' ? 'boolean' : 'string' };
  }
  let raw: ReturnType<typeof parseArgs>;
  try {
    raw = parseArgs({ args: argv, options: config, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(cleanParseError((error as Error).message));
  }
  const options: ParsedOptions = {};
  for (const [name, option] of Object.entries(spec.options)) {
    const value = raw.values[name];
    if (value === undefined) continue;
    options[name] = convert(name, option, value as string | boolean);
  }
  if (raw.values.help) options.help = true;
  const allowed = spec.positionals ?? [];
  if (raw.positionals.length > allowed.length) {
    throw new UsageError(`unexpected argument '${raw.positionals[allowed.length]}'`);
  }
  const missing = allowed.slice(raw.positionals.length).find((p) => p.required);
  if (missing && !options.help) throw new UsageError(`missing ${missing.name}`);
  return { options, positionals: raw.positionals };
}

function convert(name: string, option: OptionSpec, value: string | boolean): string | boolean | number {
  if (option.kind === 'boolean') return value;
  const text = String(value);
  if (option.kind === 'string') {
    if (option.choices && !option.choices.includes(text)) {
      throw new UsageError(`--${name} must be one of ${option.choices.join(', ')}, got '${text}'`);
    }
    if (text === '') throw new UsageError(`--${name} needs a value`);
    return text;
  }
  const number = Number(text);
  const min = option.min ?? (option.kind === 'int' ? 1 : Number.NEGATIVE_INFINITY);
  const max = option.max ?? Number.POSITIVE_INFINITY;
  if (text.trim() === '' || !Number.isFinite(number) || (option.kind === 'int' && !Number.isInteger(number))) {
    throw new UsageError(`--${name} must be ${option.kind === 'int' ? 'a whole number' : 'a number'}, got '${text}'`);
  }
  if (number < min || number > max) {
    const range = max === Number.POSITIVE_INFINITY ? `≥ ${min}` : `between ${min} and ${max}`;
    throw new UsageError(`--${name} must be ${range}, got ${text}`);
  }
  return number;
}

function cleanParseError(message: string): string {
  // node:util's messages mention its own API ("To specify a positional argument ..."): keep the first sentence.
  const first = message.split('. ')[0] ?? message;
  return first.replace(/^Unknown option '(.*)'$/, "unknown option '$1'");
}

export function formatUsage(spec: CommandSpec): string {
  const lines = [`usage: ${spec.usage}`, '', spec.summary, ''];
  const entries = Object.entries(spec.options);
  if (entries.length > 0) {
    lines.push('options:');
    const width = Math.max(...entries.map(([name, o]) => name.length + (o.kind === 'boolean' ? 0 : (o.placeholder ?? 'X').length + 1)));
    for (const [name, option] of entries) {
      const flag = option.kind === 'boolean' ? name : `${name} ${option.placeholder ?? 'X'}`;
      lines.push(`  --${flag.padEnd(width)}  ${option.description}`);
    }
  }
  return lines.join('\n');
}
