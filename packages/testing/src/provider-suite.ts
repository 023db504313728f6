/**
 * `testProvider`: the conformance suite every provider adapter passes. It runs
 * the adapter's real SDK calls against the mock upstream, scripts each fault,
 * and checks that the adapter describes what the SDK threw the way core's
 * failure table expects, reads rate-limit headers, estimates tokens sanely and
 * extracts the exact usage the upstream reported.
 */
import { randomUUID } from 'node:crypto';
import type { HeaderBag, Provider, UpstreamOutcome } from '@keypool/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockUpstream, startMockUpstream } from './mock-upstream.js';
import { mockTokens } from './mock-upstream-dialect.js';
import type { FaultStep } from './mock-upstream-faults.js';

/** The faults the suite scripts; a subject may skip some or replace their check. */
export type ProviderSuiteFault =
  | 'rate-limit-429'
  | 'insufficient_quota'
  | 'billing'
  | 'billing-402'
  | 'unauthorized-401'
  | 'forbidden-403'
  | 'server-500'
  | 'unavailable-503'
  | 'overloaded-529'
  | 'drop'
  | 'midStreamError'
  | 'beforeFirstChunkError';

export interface ProviderSuiteCallArgs {
  secret: string;
  /** The mock's root URL (`http://127.0.0.1:<port>`). OpenAI clients append `/v1`; Anthropic clients use it as is. */
  baseURL: string;
  /** Stream the answer; `call` must then consume the whole stream (so a cut stream throws). */
  stream?: boolean;
}

export interface ProviderSuiteSubject {
  provider: Provider;
  /**
   * Makes one real call with the given secret through the provider's SDK, with
   * `maxRetries: 0` (the SDK must not retry: the suite counts what reached the
   * upstream). Returns what the adapter returns (the parsed response body for a
   * plain call) or throws what it throws.
   */
  call(args: ProviderSuiteCallArgs): Promise<unknown>;
  /** A request body of the provider's API whose user message is `text`, asking for at most `maxTokens`. */
  request(args: { text: string; maxTokens: number }): unknown;
  /** Start of generated test keys, e.g. `sk-` or `sk-ant-api03-`. Default `sk-test-`. */
  secretPrefix?: string;
  /** Faults that do not apply to this provider. */
  skip?: ProviderSuiteFault[];
  /** Replaces the suite's check of a fault's outcome (still after "the call threw" and "no secret leaked"). */
  expectOutcome?: Partial<Record<ProviderSuiteFault, (outcome: UpstreamOutcome) => void>>;
}

export type ProviderSuiteFactory = () => ProviderSuiteSubject | Promise<ProviderSuiteSubject>;

interface FaultCase {
  name: ProviderSuiteFault;
  step: FaultStep;
  stream?: boolean;
  check(outcome: UpstreamOutcome): void;
}

/** Whether core's failure table will read the outcome as quota/billing exhaustion. */
export function isQuotaOutcome(outcome: UpstreamOutcome): boolean {
  if (outcome.kind !== 'http') return false;
  if (outcome.status === 402) return true;
  if (outcome.code === 'insufficient_quota' || outcome.code === 'billing_error') return true;
  // Anthropic's live API says so in a 400 message.
  return outcome.status === 400 && /credit balance/i.test(outcome.message ?? '');
}

/** A header from any HeaderBag shape, case-insensitively. */
export function headerValue(bag: HeaderBag | undefined, name: string): string | undefined {
  if (bag === undefined || bag === null) return undefined;
  const wanted = name.toLowerCase();
  if (typeof (bag as Headers).get === 'function') return (bag as Headers).get(wanted) ?? undefined;
  if (Symbol.iterator in bag) {
    for (const [key, value] of bag as Iterable<[string, string]>)
      if (key.toLowerCase() === wanted) return value;
    return undefined;
  }
  for (const [key, value] of Object.entries(bag)) {
    if (key.toLowerCase() === wanted) return Array.isArray(value) ? value.join(', ') : value;
  }
  return undefined;
}

const httpStatus = (status: number) => (outcome: UpstreamOutcome) => {
  expect(outcome.kind).toBe('http');
  expect(outcome.status).toBe(status);
};

const quota = (outcome: UpstreamOutcome) => {
  expect(outcome.kind).toBe('http');
  expect(
    isQuotaOutcome(outcome),
    `expected an outcome core reads as quota (402, code insufficient_quota/billing_error, or a 400 "credit balance" message), got ${JSON.stringify({ ...outcome, headers: undefined })}`,
  ).toBe(true);
};

const connection = (outcome: UpstreamOutcome) => {
  expect(outcome.kind).toBe('connection');
};

const FAULT_CASES: FaultCase[] = [
  {
    name: 'rate-limit-429',
    step: { status: 429, retryAfterS: 3, resetRequests: '6m0s' },
    check(outcome) {
      httpStatus(429)(outcome);
      expect(
        outcome.headers,
        'a 429 outcome must carry the response headers (retry-after, resets)',
      ).toBeDefined();
      expect(headerValue(outcome.headers, 'retry-after')).toBe('3');
    },
  },
  { name: 'insufficient_quota', step: 'insufficient_quota', check: quota },
  { name: 'billing', step: 'billing', check: quota },
  { name: 'billing-402', step: { fault: 'billing', status: 402 }, check: httpStatus(402) },
  { name: 'unauthorized-401', step: 401, check: httpStatus(401) },
  { name: 'forbidden-403', step: 403, check: httpStatus(403) },
  { name: 'server-500', step: 500, check: httpStatus(500) },
  { name: 'unavailable-503', step: 503, check: httpStatus(503) },
  { name: 'overloaded-529', step: 529, check: httpStatus(529) },
  { name: 'drop', step: 'drop', check: connection },
  { name: 'midStreamError', step: 'midStreamError', stream: true, check: connection },
  { name: 'beforeFirstChunkError', step: 'beforeFirstChunkError', stream: true, check: connection },
];

const SENTENCE = 'The quick brown fox jumps over the lazy dog near the river bank. ';

function textOfLength(chars: number): string {
  return SENTENCE.repeat(Math.ceil(chars / SENTENCE.length)).slice(0, chars);
}

/** Registers the conformance suite for one provider adapter (call at the top level of a test file). */
export function testProvider(name: string, factory: ProviderSuiteFactory): void {
  describe(`testProvider: ${name}`, () => {
    let mock: MockUpstream;
    let subject: ProviderSuiteSubject;

    beforeAll(async () => {
      mock = await startMockUpstream();
      subject = await factory();
    });
    afterAll(async () => {
      await mock?.close();
    });

    const newSecret = () => `${subject.secretPrefix ?? 'sk-test-'}${randomUUID().replaceAll('-', '')}`;
    const call = (secret: string, stream = false) => subject.call({ secret, baseURL: mock.url, stream });
    const onlyEntry = (secret: string) => {
      const entries = mock.counts.log.filter((e) => e.secret === secret);
      expect(
        entries.length,
        'one call must reach the upstream exactly once: does the factory create its client with maxRetries: 0?',
      ).toBe(1);
      return entries[0]!;
    };

    it('speaks specification v1 and has an id', () => {
      expect(subject.provider.specificationVersion).toBe('v1');
      expect(typeof subject.provider.id).toBe('string');
      expect(subject.provider.id).not.toBe('');
    });

    it('a plain call succeeds and reaches the upstream once', async () => {
      const secret = newSecret();
      await call(secret);
      expect(onlyEntry(secret)).toMatchObject({ status: 200, stream: false });
    });

    it('a streamed call succeeds and reaches the upstream once', async () => {
      const secret = newSecret();
      await call(secret, true);
      expect(onlyEntry(secret)).toMatchObject({ status: 200, stream: true, cut: false });
    });

    it('extractUsage returns the exact usage the upstream reported', async (ctx) => {
      if (!subject.provider.extractUsage) ctx.skip();
      const secret = newSecret();
      const result = await call(secret);
      const entry = onlyEntry(secret);
      expect(entry.inputTokens).toBeGreaterThan(0);
      expect(subject.provider.extractUsage!(result)).toMatchObject({
        inputTokens: entry.inputTokens,
        outputTokens: entry.outputTokens,
      });
    });

    it('readRateLimits reads the headers of a successful response', async () => {
      const secret = newSecret();
      mock.setLimits(secret, { rpm: 50, tpm: 100_000 });
      await call(secret);
      const entry = onlyEntry(secret);
      const now = Date.now();
      const snapshot = subject.provider.readRateLimits(new Headers(entry.headers), now);
      expect(snapshot.requests, 'requests bucket').toMatchObject({ limit: 50, remaining: 49 });
      const resetAt = snapshot.requests?.resetAt;
      expect(Number.isFinite(resetAt), 'requests.resetAt is a finite epoch ms').toBe(true);
      // The window is 60 s; allow rounding to whole seconds and clock skew between header and now.
      expect(resetAt!).toBeGreaterThanOrEqual(entry.time - 1000);
      expect(resetAt!).toBeLessThanOrEqual(now + 62_000);
      const tokens = snapshot.tokens ?? snapshot.inputTokens;
      expect(tokens, 'a tokens (or input tokens) bucket').toBeDefined();
      expect(tokens!.limit).toBe(100_000);
      for (const value of [tokens!.remaining, tokens!.resetAt]) expect(Number.isFinite(value)).toBe(true);
      expect(tokens!.remaining!).toBeLessThan(100_000);
    });

    it('readRateLimits reads retry-after of a 429', async () => {
      const secret = newSecret();
      mock.setScript(secret, [{ status: 429, retryAfterS: 3 }]);
      const error = await call(secret).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, 'the call must throw on a 429').toBeDefined();
      const outcome = subject.provider.describeError(error);
      expect(outcome.headers).toBeDefined();
      expect(subject.provider.readRateLimits(outcome.headers!, Date.now()).retryAfterMs).toBe(3000);
    });

    describe('describeError maps what the SDK threw', () => {
      for (const fault of FAULT_CASES) {
        it(fault.name, async (ctx) => {
          if (subject.skip?.includes(fault.name)) ctx.skip();
          const secret = newSecret();
          mock.setScript(secret, [fault.step]);
          let threw = false;
          let error: unknown;
          try {
            await call(secret, fault.stream);
          } catch (e) {
            threw = true;
            error = e;
          }
          expect(
            threw,
            `call() must throw on ${fault.name}; it returned (does the SDK retry? use maxRetries: 0)`,
          ).toBe(true);
          onlyEntry(secret);
          const outcome = subject.provider.describeError(error);
          const { headers: _headers, ...printable } = outcome;
          expect(JSON.stringify(printable), 'the outcome must not carry the secret').not.toContain(secret);
          (subject.expectOutcome?.[fault.name] ?? fault.check)(outcome);
        });
      }
    });

    it('estimateTokens is positive, grows with the message and stays near the upstream count', () => {
      const maxTokens = 100;
      const sizes = [40, 400, 4_000, 40_000];
      const estimates = sizes.map((chars) =>
        subject.provider.estimateTokens(subject.request({ text: textOfLength(chars), maxTokens })),
      );
      for (const [i, estimate] of estimates.entries()) {
        expect(estimate, `estimate for ${sizes[i]} chars`).toBeGreaterThan(0);
        if (i > 0)
          expect(estimate, `estimate for ${sizes[i]} chars vs ${sizes[i - 1]}`).toBeGreaterThan(
            estimates[i - 1]!,
          );
        // The mock counts ceil(chars / 4) input tokens; the request may produce maxTokens more.
        const upstream = mockTokens(textOfLength(sizes[i]!)) + maxTokens;
        expect(
          estimate / upstream,
          `estimate ${estimate} vs upstream ${upstream} for ${sizes[i]} chars`,
        ).toBeGreaterThan(1 / 3);
        expect(
          estimate / upstream,
          `estimate ${estimate} vs upstream ${upstream} for ${sizes[i]} chars`,
        ).toBeLessThan(3);
      }
    });
  });
}
