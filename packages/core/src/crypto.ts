import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hash,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { KeypoolError } from './errors.js';

/** A 32-byte AES key with a short public id, so sealed values say which key sealed them. */
export interface MasterKey {
  readonly id: string;
  readonly key: Buffer;
}

const FORMAT = 'kp1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const HEX_KEY = /^[0-9a-fA-F]{64}$/;
// 32 bytes are 43 base64 characters plus one optional '=' (standard or url alphabet).
const BASE64_KEY = /^[A-Za-z0-9+/_-]{43}=?$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const MASTER_KEY_ID = /^mk_[0-9a-f]{12}$/;
const CANARY_VALUE = 'keypool canary v1';
const GENERATE_HINT =
  'Generate one with `openssl rand -base64 32` (or generateMasterKey() from @keypool/core) and keep it ' +
  'outside the store.';

/**
 * Reads a master key from an environment value: 32 bytes as base64 (standard or url
 * alphabet) or 64 hex characters. The error names the variable, never the value.
 */
export function parseMasterKey(value: string | undefined, variable = 'KEYPOOL_MASTER_KEY'): MasterKey {
  const text = typeof value === 'string' ? value.trim() : '';
  if (text === '') {
    throw new KeypoolError(
      'KEYPOOL_MASTER_KEY',
      `${variable} is not set; a durable store needs it to seal secrets. ${GENERATE_HINT}`,
    );
  }
  let key: Buffer | undefined;
  if (HEX_KEY.test(text)) key = Buffer.from(text, 'hex');
  else if (BASE64_KEY.test(text)) key = Buffer.from(text, 'base64');
  if (key === undefined || key.length !== KEY_BYTES) {
    throw new KeypoolError(
      'KEYPOOL_MASTER_KEY',
      `${variable} must be 32 bytes written as base64 (44 characters) or hex (64 characters). ${GENERATE_HINT}`,
    );
  }
  return masterKeyFrom(key);
}

/** A fresh master key, base64 of 32 random bytes, ready for `KEYPOOL_MASTER_KEY`. */
export function generateMasterKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

function masterKeyFrom(key: Buffer): MasterKey {
  const id = `mk_${createHash('sha256').update(key).digest('hex').slice(0, 12)}`;
  return Object.freeze({ id, key });
}

/**
 * Seals a secret with AES-256-GCM under a random IV. The associated data binds the
 * format and master key id, so moving a sealed value to another id fails to open.
 */
export function sealSecret(secret: string, master: MasterKey): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', master.key, iv);
  cipher.setAAD(associatedData(master.id));
  const ciphertext = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  return [FORMAT, master.id, b64url(iv), b64url(ciphertext), b64url(tag)].join('.');
}

/** The id of the master key that sealed a value (for rotation and start-up checks). */
export function sealedKeyId(sealed: string): string {
  return parseSealed(sealed).id;
}

/**
 * Opens a sealed secret with whichever of `masters` sealed it. Errors name the master
 * key id, never the plaintext or the sealed text.
 */
export function openSecret(sealed: string, masters: MasterKey | readonly MasterKey[]): string {
  const parts = parseSealed(sealed);
  const list = toList(masters);
  const master = list.find((m) => m.id === parts.id);
  if (master === undefined) {
    throw new KeypoolError(
      'KEYPOOL_DECRYPT',
      `A secret was sealed with master key ${parts.id}, but the configured master keys are ` +
        `${describeIds(list)}. Set KEYPOOL_MASTER_KEY to the key the store was sealed with ` +
        '(during `keypool rotate-master-key`, provide both the old and the new key).',
    );
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', master.key, parts.iv);
    decipher.setAAD(associatedData(parts.id));
    decipher.setAuthTag(parts.tag);
    return Buffer.concat([decipher.update(parts.ciphertext), decipher.final()]).toString('utf8');
  } catch {
    throw new KeypoolError(
      'KEYPOOL_DECRYPT',
      `A secret sealed with master key ${parts.id} failed its integrity check: the stored value was ` +
        'altered or truncated. Re-add the key.',
    );
  }
}

/**
 * HMAC-SHA256 of a secret, keyed by a key derived from the master key: equal secrets
 * collapse to one fingerprint per master key, and the fingerprint reveals nothing without it.
 */
export function fingerprintSecret(secret: string, master: MasterKey): string {
  return createHmac('sha256', fingerprintKey(master)).update(secret, 'utf8').digest('hex');
}

const fingerprintKeys = new WeakMap<MasterKey, Buffer>();

function fingerprintKey(master: MasterKey): Buffer {
  let key = fingerprintKeys.get(master);
  if (key === undefined) {
    key = Buffer.from(hkdfSync('sha256', master.key, Buffer.alloc(0), 'keypool fingerprint v1', 32));
    fingerprintKeys.set(master, key);
  }
  return key;
}

const PREFIX_PART = /^[A-Za-z]+$/;

/**
 * The display form of a secret: a recognisable prefix (`sk-`, `sk-proj-`, `sk-ant-`), '…'
 * and at most the last 4 characters. Short secrets show at most 2 characters, and the
 * prefix is dropped unless at least 8 characters stay hidden.
 */
export function maskSecret(secret: string): string {
  const chars = Array.from(secret);
  if (chars.length < 12) {
    const tail = Math.min(2, Math.floor(chars.length / 4));
    return `…${chars.slice(chars.length - tail).join('')}`;
  }
  const tail = chars.slice(-4).join('');
  const head = chars.slice(0, 8).join('');
  const dash = head.lastIndexOf('-');
  let prefix = dash > 0 ? head.slice(0, dash + 1) : '';
  const isRecognisable = prefix
    .slice(0, -1)
    .split('-')
    .every((part) => PREFIX_PART.test(part));
  if (!isRecognisable || chars.length - prefix.length - 4 < 8) prefix = '';
  return `${prefix}…${tail}`;
}

/** SHA-256 hex of an admin or service bearer token; only the hash is stored. */
export function hashToken(token: string): string {
  return hash('sha256', token, 'hex');
}

/** Constant-time comparison of two token hashes, safe for inputs of different lengths. */
export function tokensEqual(a: string, b: string): boolean {
  // Hashing both sides first gives equal-length buffers, so length leaks nothing either.
  const left = createHash('sha256').update(a, 'utf8').digest();
  const right = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(left, right);
}

/** A sealed known value kept in store meta, so a wrong master key fails at start-up, clearly. */
export function createCanary(master: MasterKey): string {
  return sealSecret(CANARY_VALUE, master);
}

/** Throws KEYPOOL_MASTER_KEY unless one of `masters` opens the store's canary. */
export function checkCanary(canary: string, masters: MasterKey | readonly MasterKey[]): void {
  const list = toList(masters);
  let id: string;
  try {
    id = sealedKeyId(canary);
  } catch {
    throw new KeypoolError(
      'KEYPOOL_MASTER_KEY',
      'The store holds a master-key canary that is not a sealed value; the store meta was altered. ' +
        'Restore it from a backup or re-create the store.',
    );
  }
  if (!list.some((m) => m.id === id)) {
    throw new KeypoolError(
      'KEYPOOL_MASTER_KEY',
      `The store was sealed with master key ${id}; KEYPOOL_MASTER_KEY holds ${describeIds(list)}. ` +
        'Set KEYPOOL_MASTER_KEY to the key the store was created with, or rotate with `keypool rotate-master-key`.',
    );
  }
  let value: string | undefined;
  try {
    value = openSecret(canary, list);
  } catch {
    value = undefined;
  }
  if (value !== CANARY_VALUE) {
    throw new KeypoolError(
      'KEYPOOL_MASTER_KEY',
      `The store's master-key canary for ${id} does not open: the store meta was altered. ` +
        'Restore it from a backup or re-create the store.',
    );
  }
}

interface SealedParts {
  id: string;
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

function parseSealed(sealed: string): SealedParts {
  const parts = typeof sealed === 'string' ? sealed.split('.') : [];
  const [format, id, iv, ciphertext, tag] = parts;
  if (
    parts.length !== 5 ||
    format !== FORMAT ||
    id === undefined ||
    !MASTER_KEY_ID.test(id) ||
    iv === undefined ||
    ciphertext === undefined ||
    tag === undefined ||
    !BASE64URL.test(iv) ||
    !BASE64URL.test(ciphertext) ||
    !BASE64URL.test(tag)
  ) {
    throw new KeypoolError(
      'KEYPOOL_DECRYPT',
      `A sealed secret is malformed (expected ${FORMAT}.<masterKeyId>.<iv>.<ciphertext>.<tag>); ` +
        'the stored value was altered. Re-add the key.',
    );
  }
  const parsed = {
    id,
    iv: Buffer.from(iv, 'base64url'),
    ciphertext: Buffer.from(ciphertext, 'base64url'),
    tag: Buffer.from(tag, 'base64url'),
  };
  if (parsed.iv.length !== IV_BYTES || parsed.tag.length !== TAG_BYTES) {
    throw new KeypoolError(
      'KEYPOOL_DECRYPT',
      `A secret sealed with master key ${id} is malformed (wrong IV or tag length); the stored value ` +
        'was altered. Re-add the key.',
    );
  }
  return parsed;
}

function associatedData(masterKeyId: string): Buffer {
  return Buffer.from(`${FORMAT}.${masterKeyId}`, 'utf8');
}

function b64url(bytes: Buffer): string {
  return bytes.toString('base64url');
}

function toList(masters: MasterKey | readonly MasterKey[]): readonly MasterKey[] {
  return Array.isArray(masters) ? masters : [masters as MasterKey];
}

function describeIds(masters: readonly MasterKey[]): string {
  return masters.length === 0 ? 'no key' : masters.map((m) => m.id).join(', ');
}
