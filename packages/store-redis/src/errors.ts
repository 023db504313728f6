import type { KeypoolErrorCode } from '@keypool/spec';

// Same global marker as core's KeypoolError, so `KeypoolError.isInstance` recognises
// these without this package importing core.
const marker = Symbol.for('keypool.error');

/** An error from the Redis store, with a stable `code`. Never carries a record or secret. */
export class RedisStoreError extends Error {
  readonly [marker] = true;
  readonly code: KeypoolErrorCode;

  constructor(code: KeypoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RedisStoreError';
    this.code = code;
  }
}

const unavailableReply = /^(BUSY|LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN)\b/;
const unreachable =
  /timed out|Connection is closed|isn't writeable|max retries|All nodes failed|ECONN|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN/i;

/**
 * True when a failure means "Redis did not answer" (timeout, refused, closed,
 * busy) rather than a bug or a real error reply, which must surface.
 */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error) || error instanceof RedisStoreError) return false;
  if (error.name === 'ReplyError') return unavailableReply.test(error.message);
  return unreachable.test(error.message) || error.name === 'MaxRetriesPerRequestError';
}
