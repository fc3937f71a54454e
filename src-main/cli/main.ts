import { QuadraError, toErrorData } from '../../src-shared/errors';
import { formatUsage, parseCommand, UsageError, type CommandSpec, type Parsed } from './args';
import { bench, benchSpec } from './commands/bench';
import { demo, demoSpec } from './commands/demo';
import { hardwareCommand, hardwareSpec } from './commands/hardware';
import { predict, predictSpec } from './commands/predict';
import { checkpoints, checkpointsSpec, datasets, datasetsSpec, runs, runsSpec } from './commands/records';
import { serve, serveSpec } from './commands/serve';
import { resume, resumeSpec, train, trainSpec } from './commands/train';
import { createOutput, type Output } from './output';
import { versions } from '../engine/versions';

interface Command {
  spec: CommandSpec;
  run: (parsed: Parsed, output: Output) => Promise<number>;
}

const COMMANDS: Command[] = [
  { spec: demoSpec, run: demo },
  { spec: benchSpec, run: bench },
  { spec: hardwareSpec, run: hardwareCommand },
  { spec: predictSpec, run: predict },
  { spec: trainSpec, run: train },
  { spec: resumeSpec, run: resume },
  { spec: runsSpec, run: runs },
  { spec: checkpointsSpec, run: checkpoints },
  { spec: datasetsSpec, run: datasets },
  { spec: serveSpec, run: serve },
];

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function mainUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.spec.name.length));
  return [
    'usage: quadra <command> [options]   (quadra <command> --help for its options)',
    '',
    'Train and benchmark the Quadra Matrix oscillator engine.',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.spec.name.padEnd(width)}  ${c.spec.summary}`),
  ].join('\n');
}

/** Runs one CLI invocation; returns the exit code. Never throws, never prints a stack trace (unless QUADRA_DEBUG=1). */
export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? process.stderr : process.stdout).write(`${mainUsage()}\n`);
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`quadra ${versions().quadra}\n`);
    return EXIT_OK;
  }
  const command = COMMANDS.find((c) => c.spec.name === name);
  if (!command) {
    process.stderr.write(`quadra: unknown command '${name}'\n\n${mainUsage()}\n`);
    return EXIT_USAGE;
  }
  let parsed: Parsed;
  try {
    parsed = parseCommand(command.spec, rest);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`quadra ${name}: ${error.message}\n\n${formatUsage(command.spec)}\n`);
      return EXIT_USAGE;
    }
    throw error;
  }
  if (parsed.options.help) {
    process.stdout.write(`${formatUsage(command.spec)}\n`);
    return EXIT_OK;
  }
  const output = createOutput(Boolean(parsed.options.json));
  try {
    return await command.run(parsed, output);
  } catch (error) {
    // Arguments that parse but make no sense together (a model too large, a bad dataset spec) are usage errors too.
    const badArgument = error instanceof QuadraError && (error.code === 'INVALID_CONFIG' || error.code === 'INVALID_ARGUMENT');
    if (error instanceof UsageError || badArgument) {
      process.stderr.write(`quadra ${name}: ${error.message}\n\n${formatUsage(command.spec)}\n`);
      if (output.json) process.stdout.write(`${JSON.stringify({ error: toErrorData(error) })}\n`);
      return EXIT_USAGE;
    }
    const data = toErrorData(error);
    const prefix = error instanceof QuadraError ? `quadra ${name}` : `quadra ${name}: internal error`;
    process.stderr.write(`${prefix}: ${data.message}\n`);
    if (process.env.QUADRA_DEBUG === '1' && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    if (output.json) process.stdout.write(`${JSON.stringify({ error: data })}\n`);
    return EXIT_FAILURE;
  }
}
