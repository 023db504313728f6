// A key record as a store holds it, with a sealed secret of a real key's length: what the
// benches that size stores put in them.
import { randomBytes } from 'node:crypto';

/** @param {{ id: string, alias: string, limits: object, now: number }} key */
export function benchKeyRecord({ id, alias, limits, now }) {
  return {
    id,
    alias,
    provider: 'openai',
    // The shape of a real sealed secret (kp1.<kid>.<iv>.<ciphertext>.<tag>).
    sealedSecret: `kp1.mk_0123456789ab.${randomBytes(12).toString('base64url')}.${randomBytes(56).toString('base64url')}.${randomBytes(16).toString('base64url')}`,
    masterKeyId: 'mk_0123456789ab',
    fingerprint: randomBytes(32).toString('hex'),
    maskedSecret: 'sk-proj-…abcd',
    priority: 0,
    weight: 1,
    limits,
    enabled: true,
    createdAt: now,
    updatedAt: now,
  };
}
