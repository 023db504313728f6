/**
 * `putKey` with a fingerprint another key already has. Carries the stable code
 * of `@keypool/core`'s errors without importing core (adapters depend on spec only).
 */
export class DuplicateKeyError extends Error {
  readonly code = 'KEYPOOL_DUPLICATE_KEY' as const;
  /** Id of the key that already holds the fingerprint. */
  readonly existingKeyId: string;

  constructor(existingKeyId: string) {
    super(
      `This secret is already stored as key ${existingKeyId}. Update or delete that key instead of adding it twice.`,
    );
    this.name = 'DuplicateKeyError';
    this.existingKeyId = existingKeyId;
  }
}
