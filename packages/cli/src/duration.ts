import { InvalidArgumentError } from 'commander';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
type Unit = keyof typeof UNIT_MS;

/** setTimeout's ceiling: a longer delay fires after 1 ms instead, which would probe in a busy loop. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

const EXAMPLES = 'e.g. 30s, 5m, 1h, or 500 (ms)';

/**
 * A duration as people write one: whole ms (`500`) or a number with a unit (`500ms`, `30s`,
 * `1.5m`, `1h`). Throws a commander `InvalidArgumentError`, so commander names the flag (or the
 * environment variable) the value came from.
 */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (match === null) throw new InvalidArgumentError(`a duration is a number with a unit: ${EXAMPLES}.`);
  const ms = Math.round(Number(match[1]) * UNIT_MS[(match[2] ?? 'ms') as Unit]);
  if (ms <= 0) {
    throw new InvalidArgumentError(`it must be longer than 0 (${EXAMPLES}); leave it out to turn it off.`);
  }
  if (ms > MAX_DURATION_MS) {
    throw new InvalidArgumentError(`it must be at most ${MAX_DURATION_MS} ms (about 24 days), ${EXAMPLES}.`);
  }
  return ms;
}

/** The largest unit that divides it evenly: 300000 → `5m`, 1500 → `1500ms`. */
export function formatDuration(ms: number): string {
  for (const unit of ['h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
