import type { z } from 'zod';

/**
 * Checks one wizard field against the same zod schema the workstation validates with, so a value
 * the UI accepts is one the API accepts. Returns the message to show at the field, or null.
 *
 * engine-config's schemas carry messages written for people ("batchSize must be at least 1") and
 * are shown as written; the request schemas in src-shared/api.ts use zod's defaults, which are
 * rephrased in the same style from the issue's bounds.
 */
export function fieldError(schema: z.ZodType, value: unknown, name: string): string | null {
  const result = schema.safeParse(value);
  if (result.success) return null;
  const issue = result.error.issues[0];
  if (!issue) return `${name} is not valid`;
  if (issue.message.startsWith(`${name} `)) return issue.message;
  return describeIssue(issue, name);
}

function describeIssue(issue: z.core.$ZodIssue, name: string): string {
  switch (issue.code) {
    case 'invalid_type':
      return issue.expected === 'int' ? `${name} must be a whole number` : issue.expected === 'string' ? `${name} must be text` : `${name} must be a number`;
    case 'too_small':
      if (issue.origin === 'string') return Number(issue.minimum) <= 1 ? `${name} must not be empty` : `${name} must be at least ${issue.minimum} characters`;
      return issue.inclusive ? `${name} must be at least ${issue.minimum}` : `${name} must be greater than ${issue.minimum}`;
    case 'too_big':
      if (issue.origin === 'string') return `${name} must be at most ${issue.maximum} characters`;
      return issue.inclusive ? `${name} must be at most ${issue.maximum}` : `${name} must be less than ${issue.maximum}`;
    case 'invalid_value':
      return `${name} must be one of ${issue.values.map(String).join(', ')}`;
    default:
      return `${name}: ${issue.message}`;
  }
}
