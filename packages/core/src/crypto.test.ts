import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkCanary,
  createCanary,
  fingerprintSecret,
  generateMasterKey,
  hashToken,
  maskSecret,
  openSecret,
  parseMasterKey,
  sealedKeyId,
  sealSecret,
  tokensEqual,
} from './crypto.js';
import { KeypoolError } from './errors.js';

// Built at run time so the repository holds nothing that looks like a real key.
const SECRET = `sk-proj-${'abcdefghijklmnopqrstuvwxyz0123456789WXYZ'}`;
const master = parseMasterKey(generateMasterKey());
const other = parseMasterKey(generateMasterKey());

function thrown(fn: () => unknown): KeypoolError {
  try {
    fn();
  } catch (error) {
    expect(KeypoolError.isInstance(error)).toBe(true);
    return error as KeypoolError;
  }
  throw new Error('expected a throw');
}

/** Flips one character of one dot-separated segment, keeping it valid base64url. */
function tamper(sealed: string, segment: number): string {
  const parts = sealed.split('.');
  const part = parts[segment]!;
  parts[segment] = part === '' ? 'AAAA' : (part[0] === 'A' ? 'B' : 'A') + part.slice(1);
  return parts.join('.');
}

describe('parseMasterKey', () => {
  it('accepts base64, base64url and hex forms of the same 32 bytes', () => {
    const bytes = randomBytes(32);
    const fromB64 = parseMasterKey(bytes.toString('base64'));
    const fromUrl = parseMasterKey(bytes.toString('base64url'));
    const fromHex = parseMasterKey(` ${bytes.toString('hex').toUpperCase()}\n`);
    expect(fromB64.id).toMatch(/^mk_[0-9a-f]{12}$/);
    expect(fromUrl.id).toBe(fromB64.id);
    expect(fromHex.id).toBe(fromB64.id);
    expect(fromHex.key.equals(bytes)).toBe(true);
  });

  it('explains how to generate a key when it is missing', () => {
    for (const value of [undefined, '', '   ']) {
      const error = thrown(() => parseMasterKey(value, 'MY_MASTER'));
      expect(error.code).toBe('KEYPOOL_MASTER_KEY');
      expect(error.message).toContain('MY_MASTER');
      expect(error.message).toContain('openssl rand -base64 32');
    }
  });

  it('rejects wrong lengths without echoing the value', () => {
    const values = [
      randomBytes(16).toString('base64'),
      randomBytes(33).toString('base64'),
      randomBytes(31).toString('hex'),
      'not a key at all, clearly',
    ];
    for (const value of values) {
      const error = thrown(() => parseMasterKey(value));
      expect(error.code).toBe('KEYPOOL_MASTER_KEY');
      expect(error.message).toContain('KEYPOOL_MASTER_KEY');
      expect(error.message).not.toContain(value);
    }
  });

  it('generates keys that parse', () => {
    const a = generateMasterKey();
    expect(Buffer.from(a, 'base64')).toHaveLength(32);
    expect(parseMasterKey(a).id).not.toBe(parseMasterKey(generateMasterKey()).id);
  });
});

describe('sealSecret / openSecret', () => {
  it('round-trips and never contains the plaintext', () => {
    const sealed = sealSecret(SECRET, master);
    expect(sealed).toMatch(/^kp1\.mk_[0-9a-f]{12}\.[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(sealed).not.toContain(SECRET);
    expect(sealedKeyId(sealed)).toBe(master.id);
    expect(openSecret(sealed, master)).toBe(SECRET);
    expect(openSecret(sealed, [other, master])).toBe(SECRET);
  });

  it('uses a fresh IV each time', () => {
    expect(sealSecret(SECRET, master)).not.toBe(sealSecret(SECRET, master));
  });

  it('round-trips the empty string and non-ASCII text', () => {
    for (const secret of ['', 'ключ-🔑-鍵']) {
      expect(openSecret(sealSecret(secret, master), master)).toBe(secret);
    }
  });

  it('detects tampering with the IV, ciphertext or tag', () => {
    const sealed = sealSecret(SECRET, master);
    for (const segment of [2, 3, 4]) {
      const error = thrown(() => openSecret(tamper(sealed, segment), master));
      expect(error.code).toBe('KEYPOOL_DECRYPT');
      expect(error.message).toContain(master.id);
    }
  });

  it('refuses a sealed value moved to another master key id', () => {
    const sealed = sealSecret(SECRET, master);
    const moved = sealed.replace(master.id, other.id);
    const error = thrown(() => openSecret(moved, [master, other]));
    expect(error.code).toBe('KEYPOOL_DECRYPT');
    expect(error.message).toContain(other.id);
  });

  it('names the sealing master key id when it is not configured, never the secret', () => {
    const sealed = sealSecret(SECRET, master);
    const error = thrown(() => openSecret(sealed, other));
    expect(error.code).toBe('KEYPOOL_DECRYPT');
    expect(error.message).toContain(master.id);
    expect(error.message).toContain(other.id);
    expect(error.message).not.toContain(SECRET);
    expect(error.message).not.toContain(sealed.split('.')[3]);
  });

  it('rejects malformed sealed values', () => {
    for (const value of [
      '',
      'kp1',
      'kp2.mk_000000000000.a.b.c',
      'kp1.mk_x.a.b.c',
      'kp1.mk_000000000000.a.b',
    ]) {
      expect(thrown(() => openSecret(value, master)).code).toBe('KEYPOOL_DECRYPT');
    }
    const sealed = sealSecret(SECRET, master).split('.');
    sealed[4] = sealed[4]!.slice(0, 4);
    expect(thrown(() => openSecret(sealed.join('.'), master)).message).toContain(master.id);
  });

  it('round-trips any string, and no error ever contains the secret (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), fc.nat(3), (secret, segment) => {
        const sealed = sealSecret(secret, master);
        expect(openSecret(sealed, master)).toBe(secret);
        const attempts = (value: string) => [
          () => openSecret(value, other),
          () => openSecret(tamper(value, 2 + (segment % 3)), master),
        ];
        // The same failures on a sealed secret of fixed text: a generated secret that is a word of
        // that text ("alte" in "altered") is in the message without having leaked.
        const reference = attempts(sealSecret('reference-secret', master)).map((a) => thrown(a).message);
        attempts(sealed).forEach((attempt, i) => {
          const error = thrown(attempt);
          if (secret.length >= 4 && !reference[i]!.includes(secret))
            expect(error.message).not.toContain(secret);
        });
      }),
      { numRuns: 200 },
    );
  });
});

describe('fingerprintSecret', () => {
  it('is stable for equal secrets and differs per secret and per master key', () => {
    const a = fingerprintSecret(SECRET, master);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(fingerprintSecret(SECRET, parseMasterKey(master.key.toString('hex')))).toBe(a);
    expect(fingerprintSecret(`${SECRET}x`, master)).not.toBe(a);
    expect(fingerprintSecret(SECRET, other)).not.toBe(a);
    expect(a).not.toContain(SECRET);
  });
});

describe('maskSecret', () => {
  it.each([
    ['sk-abcdefghijklmnopqrstuvwxyz1234', 'sk-…1234'],
    ['sk-proj-abcdefghijklmnopqrstuvwxyzABCD', 'sk-proj-…ABCD'],
    ['sk-ant-api03-abcdefghijklmnopqrstuvwxyzWXYZ', 'sk-ant-…WXYZ'],
    ['0123456789abcdef0123456789abcdef', '…cdef'],
    ['sk-abcdefghij', '…ghij'], // a prefix would leave fewer than 8 characters hidden
    ['12345678-abcdefghijklmnop', '…mnop'], // digits are no recognisable prefix
    ['short-key1', '…y1'],
    ['abcd', '…d'],
    ['abc', '…'],
    ['', '…'],
  ])('%s -> %s', (secret, masked) => {
    expect(maskSecret(secret)).toBe(masked);
  });

  it('never shows more than 4 trailing characters nor most of the secret (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (secret) => {
        const masked = maskSecret(secret);
        const [, tail = ''] = masked.split('…');
        expect(Array.from(tail).length).toBeLessThanOrEqual(4);
        const length = Array.from(secret).length;
        const shown = Array.from(masked).length - 1;
        const allowed = length >= 12 ? length - 8 : Math.min(2, Math.floor(length / 4));
        expect(shown).toBeLessThanOrEqual(allowed);
      }),
    );
  });
});

describe('tokens', () => {
  it('hashes and compares in constant time, whatever the lengths', () => {
    const hash = hashToken('kp_admin_token');
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(tokensEqual(hash, hashToken('kp_admin_token'))).toBe(true);
    expect(tokensEqual(hash, hashToken('kp_admin_tokeN'))).toBe(false);
    expect(tokensEqual(hash, hash.slice(0, 10))).toBe(false);
    expect(tokensEqual('', hash)).toBe(false);
  });
});

describe('canary', () => {
  it('passes with the sealing key, also among others', () => {
    const canary = createCanary(master);
    expect(() => checkCanary(canary, master)).not.toThrow();
    expect(() => checkCanary(canary, [other, master])).not.toThrow();
  });

  it('says which master key the store needs and which one is configured', () => {
    const error = thrown(() => checkCanary(createCanary(master), other));
    expect(error.code).toBe('KEYPOOL_MASTER_KEY');
    expect(error.message).toContain(
      `store was sealed with master key ${master.id}; KEYPOOL_MASTER_KEY holds ${other.id}`,
    );
  });

  it('reports an altered canary', () => {
    expect(thrown(() => checkCanary('garbage', master)).code).toBe('KEYPOOL_MASTER_KEY');
    expect(thrown(() => checkCanary(tamper(createCanary(master), 3), master)).code).toBe(
      'KEYPOOL_MASTER_KEY',
    );
    expect(thrown(() => checkCanary(sealSecret('something else', master), master)).code).toBe(
      'KEYPOOL_MASTER_KEY',
    );
  });
});
