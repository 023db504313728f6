import type { KeypoolErrorCode } from '@keypool/spec';

const marker = Symbol.for('keypool.error');

/**
 * Base class of every error keypool throws. `code` is stable; messages say what
 * to do and never contain a secret. `isInstance` works across copies of the
 * package (the marker is a global symbol), like the Vercel AI SDK's errors.
 */
export class KeypoolError extends Error {
  readonly [marker] = true;
  readonly code: KeypoolErrorCode;

  constructor(code: KeypoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KeypoolError';
    this.code = code;
  }

  static isInstance(value: unknown): value is KeypoolError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[marker] === true;
  }
}

export class NoKeyAvailableError extends KeypoolError {
  /** Milliseconds until some key may be eligible; null when none will become so on its own. */
  readonly retryAfterMs: number | null;
  readonly provider: string;
  readonly model: string | undefined;
  /** Why each candidate key was skipped, by alias. */
  readonly reasons: Record<string, string>;

  constructor(args: {
    provider: string;
    model?: string | undefined;
    retryAfterMs: number | null;
    reasons: Record<string, string>;
    waitedMs?: number;
  }) {
    const what = args.model ? `${args.provider} model ${args.model}` : args.provider;
    const summary = Object.entries(args.reasons)
      .map(([alias, reason]) => `${alias}: ${reason}`)
      .join(', ');
    const hint =
      args.retryAfterMs === null
        ? 'No key will recover on its own: add a key, re-enable one, or reset an exhausted one.'
        : `Retry in ${Math.ceil(args.retryAfterMs)} ms, or raise maxWaitMs to wait for it.`;
    super(
      'KEYPOOL_NO_KEY_AVAILABLE',
      `No ${what} key is available${args.waitedMs ? ` after waiting ${args.waitedMs} ms` : ''}` +
        `${summary ? ` (${summary})` : ' (the pool has no key for it)'}. ${hint}`,
    );
    this.name = 'NoKeyAvailableError';
    this.retryAfterMs = args.retryAfterMs;
    this.provider = args.provider;
    this.model = args.model;
    this.reasons = args.reasons;
  }
}

export class ConfigError extends KeypoolError {
  constructor(message: string, code: KeypoolErrorCode = 'KEYPOOL_INVALID_CONFIG') {
    super(code, message);
    this.name = 'ConfigError';
  }
}

/** An environment variable could not be read. Names the variable, never its value. */
export class EnvError extends KeypoolError {
  readonly variable: string;
  constructor(variable: string, problem: string) {
    super('KEYPOOL_INVALID_ENV', `${variable}: ${problem}`);
    this.name = 'EnvError';
    this.variable = variable;
  }
}

/** Thrown by `execute` when the upstream failed on every attempt; `cause` is the last error. */
export class UpstreamError extends KeypoolError {
  readonly attempts: number;
  constructor(message: string, attempts: number, cause: unknown) {
    super('KEYPOOL_UPSTREAM', message, { cause });
    this.name = 'UpstreamError';
    this.attempts = attempts;
  }
}
