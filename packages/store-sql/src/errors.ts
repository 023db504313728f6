import type { KeypoolErrorCode } from '@keypool/spec';

// Same global marker as core's KeypoolError, so `KeypoolError.isInstance` recognises
// these without this package importing core at run time.
const marker = Symbol.for('keypool.error');

/** An error of the SQL store, with a stable `code` and a message that says how to fix it. */
export class SqlStoreError extends Error {
  readonly [marker] = true;
  readonly code: KeypoolErrorCode;

  constructor(code: KeypoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SqlStoreError';
    this.code = code;
  }
}
