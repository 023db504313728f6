/**
 * A real HTTP server on 127.0.0.1 that speaks enough of the OpenAI and
 * Anthropic APIs for the official SDKs to work against it unmodified, with
 * scripted faults and enforced rate limits per key, and counts of everything
 * it saw. Provider adapters and pools are tested against it instead of mocks.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { anthropicDialect } from './mock-upstream-anthropic.js';
import { type MockCounts, MockCountsRecorder } from './mock-upstream-counts.js';
import type {
  Answer,
  Dialect,
  DialectError,
  RateLimitOverrides,
  ReplyRequest,
} from './mock-upstream-dialect.js';
import { type FaultScript, type FaultSpec, type FaultStep, ScriptBook } from './mock-upstream-faults.js';
import { type MockLimits, parseGoDuration, SlidingLimiter } from './mock-upstream-limits.js';
import { openaiDialect } from './mock-upstream-openai.js';
import { PromptCache } from './mock-upstream-prompt-cache.js';

export interface MockUpstreamOptions {
  /** Sliding window for enforced rpm/tpm and the default for `counts.maxInAnyWindow`. Default 60 000. */
  windowMs?: number;
  /** The assistant's answer; its token count is the output tokens reported. */
  reply?: string | ((request: ReplyRequest) => string);
  /** Alias → secret, so scripts, limits and counts can be addressed by alias. */
  keys?: Record<string, string>;
  /** Clock in epoch ms (default `Date.now`). */
  now?: () => number;
}

export interface MockUpstream {
  /** `http://127.0.0.1:<port>`. OpenAI SDK baseURL is `${url}/v1`; Anthropic SDK baseURL is `url`. */
  readonly url: string;
  /** Live view of what the mock saw. */
  readonly counts: MockCounts;
  /** Faults for requests carrying this key (secret or alias; `*` for every key without a script). */
  setScript(secretOrAlias: string, script: FaultScript | FaultStep[]): void;
  /** Enforce rpm/tpm for this key over the sliding window; 429 when a request would exceed them. */
  setLimits(secretOrAlias: string, limits: MockLimits): void;
  /**
   * Make these keys (secrets or aliases) one organization that shares `limits` on top of each
   * key's own, as OpenAI and Anthropic enforce theirs; 429 when a request would exceed them.
   */
  setOrgLimits(organization: string, members: readonly string[], limits: MockLimits): void;
  /** Forget scripts, limits, windows, prompt caches and counts. */
  reset(): void;
  close(): Promise<void>;
}

export const DEFAULT_MOCK_REPLY = 'Hello from the keypool mock upstream.';

const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** Which API a request speaks: by path, and for shared paths (`/v1/models`) by Anthropic's own headers. */
function dialectOf(req: IncomingMessage, path: string): Dialect {
  if (path === '/v1/messages' || path.startsWith('/v1/messages/')) return anthropicDialect;
  if (req.headers['anthropic-version'] !== undefined || req.headers['x-api-key'] !== undefined) {
    return anthropicDialect;
  }
  return openaiDialect;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export async function startMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const windowMs = options.windowMs ?? 60_000;
  const now = options.now ?? Date.now;
  const aliases = new Map(Object.entries(options.keys ?? {}));
  const resolve = (secretOrAlias: string) => aliases.get(secretOrAlias) ?? secretOrAlias;
  const counts = new MockCountsRecorder(windowMs, resolve);
  const scripts = new ScriptBook();
  const limiter = new SlidingLimiter(windowMs);
  /** Secret → the limiter id of its organization. */
  const orgOf = new Map<string, string>();
  const promptCache = new PromptCache();
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const replyFor = (request: ReplyRequest) =>
    typeof options.reply === 'function' ? options.reply(request) : (options.reply ?? DEFAULT_MOCK_REPLY);

  const delay = (ms: number) =>
    new Promise<void>((done) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        done();
      }, ms);
      timers.add(timer);
    });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const time = now();
    const path = new URL(req.url ?? '/', 'http://mock').pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    const dialect = dialectOf(req, path);
    const secret = dialect.secretOf(req.headers);
    let stream = false;
    const log = (
      status: number,
      headers: Record<string, string> = {},
      inputTokens = 0,
      outputTokens = 0,
      cut = false,
    ) =>
      counts.record({
        time,
        secret,
        provider: dialect.provider,
        path,
        status,
        inputTokens,
        outputTokens,
        stream,
        cut,
        headers,
      });
    const sendError = (error: DialectError, headers: Record<string, string> = {}) => {
      const sent = { ...dialect.requestIdHeaders(), ...headers };
      log(error.status, sent);
      const payload = JSON.stringify(error.body);
      res.writeHead(error.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
        ...sent,
      });
      res.end(payload);
    };

    let body: Record<string, unknown> = {};
    const raw = await readBody(req);
    if (raw.trim() !== '') {
      try {
        const parsed: unknown = JSON.parse(raw);
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
          body = parsed as Record<string, unknown>;
      } catch {
        sendError(dialect.requestError(400, 'The request body is not valid JSON.'));
        return;
      }
    }
    stream = body.stream === true;

    const headerProblem = dialect.checkHeaders(req.headers, secret);
    if (headerProblem) return sendError(headerProblem);

    const plan = dialect.route(method, path, body, {
      now: time,
      reply: replyFor({ provider: dialect.provider, path, body }),
      secret,
      promptCache,
    });
    if (!plan) return sendError(dialect.requestError(404, `Unknown request URL: ${method} ${path}.`));
    if (!plan.ok) return sendError(dialect.requestError(plan.status, plan.message, plan.code));

    const step: FaultSpec | undefined = scripts.take(secret);
    if (step?.slow) {
      await delay(step.slow);
      if (closed || res.destroyed) return log(0);
    }
    if (step?.fault === 'drop') {
      log(0);
      req.socket.destroy();
      return;
    }
    const isErrorStep =
      step !== undefined &&
      (step.fault === 'insufficient_quota' ||
        step.fault === 'billing' ||
        (step.fault === undefined && step.status));
    if (step && isErrorStep) {
      const error = dialect.faultError(step, plan.model);
      const headers: Record<string, string> = {};
      if (error.status === 429) {
        const overrides: RateLimitOverrides = {};
        if (step.resetRequests) overrides.requestsResetMs = parseGoDuration(step.resetRequests);
        if (step.resetTokens) overrides.tokensResetMs = parseGoDuration(step.resetTokens);
        Object.assign(headers, dialect.rateLimitHeaders(limiter.view(secret, time), time, overrides));
      }
      if (step.retryAfterS !== undefined) headers['retry-after'] = String(step.retryAfterS);
      if (step.retryAfterMs !== undefined) headers['retry-after-ms'] = String(step.retryAfterMs);
      return sendError(error, headers);
    }

    const org = orgOf.get(secret);
    const check = limiter.admit(secret, plan.inputTokens, plan.outputTokens, time, org ? [org] : []);
    if (!check.ok) {
      const waitMs = check.exceeded === 'requests' ? check.view.requestsResetMs : check.view.tokensResetMs;
      const headers = dialect.rateLimitHeaders(check.view, time);
      // Anthropic always says when to come back; OpenAI only through the reset headers.
      if (dialect.provider === 'anthropic')
        headers['retry-after'] = String(Math.max(1, Math.ceil(waitMs / 1000)));
      return sendError(dialect.limitError(check.exceeded, check.view, plan.model), headers);
    }

    const headers = { ...dialect.requestIdHeaders(), ...dialect.rateLimitHeaders(check.view, time) };
    const cut = step?.fault === 'midStreamError' || step?.fault === 'beforeFirstChunkError';
    log(200, headers, plan.inputTokens, cut ? 0 : plan.outputTokens, cut);
    plan.commit?.();
    writeAnswer(res, dialect, plan, headers, step);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      // A bug in the mock must not look like an upstream answer the SDK could parse as success.
      if (!res.headersSent) {
        res.writeHead(599, { 'content-type': 'text/plain' });
        res.end(`keypool mock upstream failed: ${error instanceof Error ? error.message : String(error)}`);
      } else {
        res.destroy();
      }
    });
  });
  server.keepAliveTimeout = 1000;

  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => done());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    setScript(secretOrAlias, script) {
      scripts.set(secretOrAlias === '*' ? '*' : resolve(secretOrAlias), script);
    },
    setLimits(secretOrAlias, limits) {
      limiter.set(resolve(secretOrAlias), limits);
    },
    setOrgLimits(organization, members, limits) {
      const id = `org\u0000${organization}`;
      limiter.set(id, limits);
      for (const member of members) orgOf.set(resolve(member), id);
    },
    reset() {
      scripts.clear();
      limiter.clear();
      orgOf.clear();
      promptCache.clear();
      counts.reset();
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      });
    },
  };
}

function writeAnswer(
  res: ServerResponse,
  dialect: Dialect,
  plan: { answer: Answer; model?: string },
  headers: Record<string, string>,
  step?: FaultSpec,
): void {
  const { answer } = plan;
  const cutAfter = (data: string) => {
    // Write, then cut once the bytes are on their way, so the client sees a started and broken answer.
    res.write(data, () => res.destroy());
  };
  if (answer.kind === 'sse') {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      ...headers,
    });
    if (step?.fault === 'beforeFirstChunkError') {
      res.flushHeaders();
      res.socket?.write('', () => res.destroy());
      return;
    }
    if (step?.fault === 'midStreamError') {
      const sent = answer.frames.slice(0, step.afterChunks ?? 2).join('');
      if (step.status === undefined) {
        cutAfter(sent);
        return;
      }
      // With a status: the API's in-stream error event (e.g. Anthropic's overloaded_error), then a clean end.
      res.end(sent + dialect.streamErrorFrame(dialect.faultError(step, plan.model)));
      return;
    }
    res.end(answer.frames.join(''));
    return;
  }
  const payload = JSON.stringify(answer.body);
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  if (step?.fault === 'beforeFirstChunkError') {
    res.flushHeaders();
    res.socket?.write('', () => res.destroy());
    return;
  }
  if (step?.fault === 'midStreamError') {
    cutAfter(payload.slice(0, Math.floor(payload.length / 2)));
    return;
  }
  res.end(payload);
}
