import type {
  Classification,
  HeaderBag,
  RateLimitBucket,
  RateLimitSnapshot,
  UpstreamOutcome,
} from '@keypool/spec';

/** How long a key cools after a 429 when no header says otherwise. */
export const DEFAULT_RATE_LIMIT_COOLDOWN_MS = 60_000;

/** Header-derived waits beyond a day are garbage or a misconfigured proxy; cap them. */
const MAX_HEADER_WAIT_MS = 24 * 60 * 60 * 1000;

const QUOTA_CODE = /quota|billing|credit/i;
// Providers that put the quota signal only in the message (Anthropic's low credit balance is a 400).
const QUOTA_MESSAGE = /exceeded your current quota|credit balance is too low|billing hard limit/i;

/**
 * The failure table (DESIGN.md "Failure classification"): the one place that decides
 * what an upstream outcome means for the key and whether the request may move on.
 */
export function classifyOutcome(outcome: UpstreamOutcome, now: number): Classification {
  switch (outcome.kind) {
    case 'abort':
      return { failure: 'abort', retryable: false, countsForBreaker: false };
    case 'timeout':
      return { failure: 'timeout', retryable: true, countsForBreaker: true };
    case 'connection':
      return { failure: 'connection', retryable: true, countsForBreaker: true };
  }
  const status = outcome.status;
  // An outcome without a usable status tells nothing against the key (e.g. a bug in the
  // caller's own code): surface it instead of retrying it on every key.
  if (typeof status !== 'number' || !Number.isInteger(status)) {
    return { failure: 'caller', retryable: false, countsForBreaker: false };
  }
  if (status >= 500 && status <= 599) return { failure: 'server', retryable: true, countsForBreaker: true };
  if (status === 402 || (status >= 400 && status <= 499 && isQuotaSignal(outcome))) {
    return { failure: 'quota', retryable: true, countsForBreaker: false };
  }
  switch (status) {
    case 429:
      return {
        failure: 'rate-limit',
        retryable: true,
        countsForBreaker: false,
        cooldownMs: cooldownFromHeaders(outcome.headers, now) ?? DEFAULT_RATE_LIMIT_COOLDOWN_MS,
      };
    case 401:
      return { failure: 'auth', retryable: true, countsForBreaker: false };
    case 403:
      return { failure: 'forbidden', retryable: true, countsForBreaker: false };
    case 408:
      return { failure: 'timeout', retryable: true, countsForBreaker: true };
  }
  if (status >= 400 && status <= 499) return { failure: 'caller', retryable: false, countsForBreaker: false };
  // 1xx-3xx or out-of-range statuses reported as failures: the upstream misbehaved.
  return { failure: 'server', retryable: true, countsForBreaker: true };
}

function isQuotaSignal(outcome: UpstreamOutcome): boolean {
  if (typeof outcome.code === 'string' && QUOTA_CODE.test(outcome.code)) return true;
  return (
    (outcome.status === 429 || outcome.status === 400) &&
    typeof outcome.message === 'string' &&
    QUOTA_MESSAGE.test(outcome.message)
  );
}

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

/**
 * A header by case-insensitive name from a `Headers`, a plain object (string or
 * string[] values; arrays give their first string) or an iterable of pairs. Never throws.
 */
export function readHeader(headers: HeaderBag | undefined, name: string): string | undefined {
  if (headers === undefined || headers === null || typeof headers !== 'object') return undefined;
  const wanted = name.toLowerCase();
  try {
    const bag = headers as unknown as Record<string | symbol, unknown>;
    // Headers-like (fetch, undici, node-fetch): its get() is already case-insensitive.
    if (typeof bag['get'] === 'function' && typeof bag['append'] === 'function') {
      return headerValue((bag['get'] as (n: string) => unknown).call(headers, wanted));
    }
    if (typeof bag[Symbol.iterator] === 'function') {
      for (const pair of headers as Iterable<unknown>) {
        if (Array.isArray(pair) && typeof pair[0] === 'string' && pair[0].toLowerCase() === wanted) {
          const value = headerValue(pair[1]);
          if (value !== undefined) return value;
        }
      }
      return undefined;
    }
    for (const key of Object.keys(bag)) {
      if (key.toLowerCase() === wanted) {
        const value = headerValue(bag[key]);
        if (value !== undefined) return value;
      }
    }
  } catch {
    // Exotic header objects (throwing getters, invalid names) read as absent.
  }
  return undefined;
}

function headerValue(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (Array.isArray(value)) {
    for (const item of value) {
      if (typeof item === 'string') return item;
    }
  }
  return undefined;
}

const GO_DURATION = /^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/;
const GO_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g;
const GO_UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * A Go duration as OpenAI sends it in `x-ratelimit-reset-*` ('6m0s', '1.5s', '20ms',
 * '1h2m3s', '250us') in milliseconds; undefined for anything else, negatives included.
 */
export function parseGoDuration(text: string): number | undefined {
  if (typeof text !== 'string') return undefined;
  const value = text.trim();
  if (value === '0' || value === '+0') return 0;
  const body = value.startsWith('+') ? value.slice(1) : value;
  if (!GO_DURATION.test(body)) return undefined;
  let total = 0;
  for (const match of body.matchAll(GO_PART)) {
    total += Number.parseFloat(match[1]!) * GO_UNIT_MS[match[2]!]!;
  }
  return Number.isFinite(total) ? total : undefined;
}

const DECIMAL = /^\d+(?:\.\d+)?$/;
const HTTP_DATE = /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

function parseCount(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = text.trim();
  if (!DECIMAL.test(value)) return undefined;
  const number = Number(value);
  return Number.isFinite(number) ? number : undefined;
}

/** A wait in ms, usable only if finite and positive (a 0 says nothing about how long to wait); capped. */
function usableWait(ms: number | undefined): number | undefined {
  if (ms === undefined || !Number.isFinite(ms) || ms <= 0) return undefined;
  return Math.min(ms, MAX_HEADER_WAIT_MS);
}

function dateWait(text: string, pattern: RegExp, now: number): number | undefined {
  if (!pattern.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isFinite(at) ? usableWait(at - now) : undefined;
}

/** `retry-after-ms` (ms) or else `retry-after` (seconds or an HTTP date), as the SDKs read them. */
function retryAfterWaits(headers: HeaderBag | undefined, now: number): number[] {
  const waits: number[] = [];
  const ms = usableWait(parseCount(readHeader(headers, 'retry-after-ms')));
  if (ms !== undefined) waits.push(ms);
  const retryAfter = readHeader(headers, 'retry-after')?.trim();
  if (retryAfter !== undefined) {
    const seconds = parseCount(retryAfter);
    const wait = seconds !== undefined ? usableWait(seconds * 1000) : dateWait(retryAfter, HTTP_DATE, now);
    if (wait !== undefined) waits.push(wait);
  }
  return waits;
}

/** OpenAI resets are Go durations; Azure sends plain seconds. */
function relativeReset(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const duration = parseGoDuration(text);
  if (duration !== undefined) return usableWait(duration);
  const seconds = parseCount(text);
  return seconds !== undefined ? usableWait(seconds * 1000) : undefined;
}

function absoluteReset(text: string | undefined, now: number): number | undefined {
  return text === undefined ? undefined : dateWait(text.trim(), RFC3339, now);
}

type BucketName = 'requests' | 'tokens' | 'inputTokens' | 'outputTokens';

/** Where each bucket lives in OpenAI-style and Anthropic-style headers. */
const BUCKETS: ReadonlyArray<{ bucket: BucketName; openai?: string; anthropic: string }> = [
  { bucket: 'requests', openai: 'requests', anthropic: 'requests' },
  { bucket: 'tokens', openai: 'tokens', anthropic: 'tokens' },
  { bucket: 'inputTokens', anthropic: 'input-tokens' },
  { bucket: 'outputTokens', anthropic: 'output-tokens' },
];

interface BucketReading {
  bucket: RateLimitBucket;
  /** Ms from now until the bucket refills, when known. */
  resetInMs?: number;
}

function readBuckets(headers: HeaderBag | undefined, now: number): Map<BucketName, BucketReading> {
  const readings = new Map<BucketName, BucketReading>();
  for (const { bucket, openai, anthropic } of BUCKETS) {
    const limit =
      parseCount(openai ? readHeader(headers, `x-ratelimit-limit-${openai}`) : undefined) ??
      parseCount(readHeader(headers, `anthropic-ratelimit-${anthropic}-limit`));
    const remaining =
      parseCount(openai ? readHeader(headers, `x-ratelimit-remaining-${openai}`) : undefined) ??
      parseCount(readHeader(headers, `anthropic-ratelimit-${anthropic}-remaining`));
    const resetInMs =
      (openai ? relativeReset(readHeader(headers, `x-ratelimit-reset-${openai}`)) : undefined) ??
      absoluteReset(readHeader(headers, `anthropic-ratelimit-${anthropic}-reset`), now);
    if (limit === undefined && remaining === undefined && resetInMs === undefined) continue;
    const reading: BucketReading = { bucket: {} };
    if (limit !== undefined) reading.bucket.limit = limit;
    if (remaining !== undefined) reading.bucket.remaining = remaining;
    if (resetInMs !== undefined) {
      reading.bucket.resetAt = now + resetInMs;
      reading.resetInMs = resetInMs;
    }
    readings.set(bucket, reading);
  }
  return readings;
}

/**
 * What rate-limit headers say about a key's headroom: OpenAI's `x-ratelimit-*`,
 * Anthropic's `anthropic-ratelimit-*`, and `retry-after(-ms)`. Garbage is ignored, never thrown.
 */
export function parseRateLimitHeaders(headers: HeaderBag | undefined, now: number): RateLimitSnapshot {
  const snapshot: RateLimitSnapshot = { observedAt: now };
  for (const [name, reading] of readBuckets(headers, now)) snapshot[name] = reading.bucket;
  const [retryAfterMs] = retryAfterWaits(headers, now);
  if (retryAfterMs !== undefined) snapshot.retryAfterMs = retryAfterMs;
  return snapshot;
}

/**
 * How long a rate-limited key should cool, from whatever the response said: an explicit
 * `retry-after-ms`/`retry-after` wins (the larger if both); otherwise the bucket resets, where
 * buckets known to be empty decide and, if none is known to be empty, the latest reset does.
 * Capped at 24 h; undefined when no header helps.
 */
export function cooldownFromHeaders(headers: HeaderBag | undefined, now: number): number | undefined {
  const waits = retryAfterWaits(headers, now);
  // An explicit retry-after is the server's instruction for this request; bucket
  // resets say when a whole bucket refills, which can be much later.
  if (waits.length > 0) return Math.max(...waits);
  const readings = [...readBuckets(headers, now).values()].filter((r) => r.resetInMs !== undefined);
  const empty = readings.filter((r) => r.bucket.remaining === 0);
  for (const reading of empty.length > 0 ? empty : readings) waits.push(reading.resetInMs!);
  return waits.length > 0 ? Math.max(...waits) : undefined;
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

const CONNECTION_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT']);
const UNDICI_TIMEOUT = /^UND_ERR_\w*TIMEOUT$/;
const MAX_MESSAGE_CHARS = 500;

/**
 * Turns whatever a call threw (an SDK error, a fetch error, an abort, a Response) into an
 * outcome for the failure table. Works without knowing the SDK; provider adapters may refine.
 * The message is scrubbed of anything that looks like a key.
 */
export function describeUpstreamError(error: unknown): UpstreamOutcome {
  const outcome: UpstreamOutcome = { kind: 'http' };
  const value = asRecord(error);
  if (value === undefined) {
    if (typeof error === 'string') outcome.message = scrubMessage(error);
    return outcome;
  }
  const response = asRecord(safeGet(value, 'response'));
  const status =
    toStatus(safeGet(value, 'status')) ??
    toStatus(safeGet(value, 'statusCode')) ??
    toStatus(response && safeGet(response, 'status'));
  const headers =
    toHeaderBag(safeGet(value, 'headers')) ?? toHeaderBag(response && safeGet(response, 'headers'));
  const code = providerCode(value);
  const message = safeGet(value, 'message') ?? safeGet(value, 'statusText');

  if (status !== undefined) outcome.status = status;
  else outcome.kind = transportKind(value) ?? 'http';
  if (headers !== undefined) outcome.headers = headers;
  if (code !== undefined) outcome.code = code;
  if (typeof message === 'string' && message !== '') outcome.message = scrubMessage(message);
  return outcome;
}

/** Abort, timeout or connection failure, looking through `cause` chains (fetch wraps the socket error). */
function transportKind(error: Record<string, unknown>): UpstreamOutcome['kind'] | undefined {
  let kind: UpstreamOutcome['kind'] | undefined;
  let current: Record<string, unknown> | undefined = error;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    const name = String(safeGet(current, 'name') ?? '');
    const code = String(safeGet(current, 'code') ?? '');
    const message = String(safeGet(current, 'message') ?? '');
    if (name === 'AbortError' || name === 'APIUserAbortError' || code === 'ABORT_ERR') {
      // An abort caused by a timeout signal is a timeout.
      kind ??= 'abort';
    } else if (name.includes('Timeout') || TIMEOUT_CODES.has(code) || UNDICI_TIMEOUT.test(code)) {
      return 'timeout';
    } else if (
      CONNECTION_CODES.has(code) ||
      name === 'APIConnectionError' ||
      name === 'FetchError' ||
      message === 'fetch failed'
    ) {
      kind = kind === 'abort' ? kind : 'connection';
    }
    const next: unknown = safeGet(current, 'cause') ?? safeGet(current, 'reason');
    current = next === current ? undefined : asRecord(next);
  }
  return kind;
}

function providerCode(error: Record<string, unknown>): string | undefined {
  const body = asRecord(safeGet(error, 'error'));
  // Anthropic's SDK keeps the whole body: { type: 'error', error: { type: 'rate_limit_error' } }.
  const inner = body && asRecord(safeGet(body, 'error'));
  const candidates = [
    safeGet(error, 'code'),
    inner && safeGet(inner, 'code'),
    inner && safeGet(inner, 'type'),
    body && safeGet(body, 'code'),
    body && safeGet(body, 'type'),
    safeGet(error, 'type'),
  ];
  for (const candidate of candidates) {
    if (typeof candidate === 'string' && candidate !== '' && candidate !== 'error') {
      return scrubMessage(candidate.slice(0, 100));
    }
  }
  return undefined;
}

const SK_TOKEN = /\bsk-[^\s'"`,;)\]}]+/g;
const BEARER_TOKEN = /\bBearer\s+[^\s'"`,;)\]}]+/gi;
// Long base64/hex runs with a digit: keys of other providers, tokens, signatures (not long words).
const LONG_RUN = /[A-Za-z0-9+/_=-]{32,}/g;

/** A message fit for logs, events and errors: key-like tokens replaced by '[redacted]'. */
function scrubMessage(message: string): string {
  // Scrub before cutting, so a cut never leaves part of a key unredacted.
  const text = message
    .replace(SK_TOKEN, '[redacted]')
    .replace(BEARER_TOKEN, 'Bearer [redacted]')
    .replace(LONG_RUN, (run) => (/\d/.test(run) ? '[redacted]' : run));
  return text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS)}…` : text;
}

function toStatus(value: unknown): number | undefined {
  const number = typeof value === 'string' && /^\d{3}$/.test(value) ? Number(value) : value;
  return typeof number === 'number' && Number.isInteger(number) && number >= 100 && number <= 599
    ? number
    : undefined;
}

function toHeaderBag(value: unknown): HeaderBag | undefined {
  return typeof value === 'object' && value !== null ? (value as HeaderBag) : undefined;
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return (typeof value === 'object' || typeof value === 'function') && value !== null
    ? (value as Record<string, unknown>)
    : undefined;
}

/** Property access that survives throwing getters and proxies. */
function safeGet(value: Record<string, unknown>, key: string): unknown {
  try {
    return value[key];
  } catch {
    return undefined;
  }
}
