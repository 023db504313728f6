// Server-sent events over fetch. EventSource cannot send an Authorization header, and the token
// must not go in the URL, so the dashboard reads /v1/events as a streamed fetch body and parses
// the event-stream format itself (https://html.spec.whatwg.org/#event-stream-interpretation).

export interface SseMessage {
  id?: string;
  event: string;
  data: string;
}

/** Incremental event-stream parser: feed it chunks as they arrive, get whole messages back. */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  /** Last `retry:` the server asked for, ms. */
  retryMs: number | undefined;

  feed(chunk: string): SseMessage[] {
    this.buffer += chunk;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i];
      if (ch !== '\n' && ch !== '\r') continue;
      // A CR at the very end may be the first half of CRLF: wait for the next chunk.
      if (ch === '\r' && i === this.buffer.length - 1) break;
      this.line(this.buffer.slice(start, i), out);
      if (ch === '\r' && this.buffer[i + 1] === '\n') i++;
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  private line(line: string, out: SseMessage[]): void {
    if (line === '') {
      if (this.data.length > 0) {
        out.push({
          event: this.event || 'message',
          data: this.data.join('\n'),
          ...(this.id !== undefined && { id: this.id }),
        });
      }
      this.data = [];
      this.event = '';
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
  }
}

export type StreamState = 'connecting' | 'open' | 'reconnecting' | 'unauthorized' | 'closed';

type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface EventStreamOptions {
  url: string;
  token: string;
  onMessage(message: SseMessage): void;
  onState?(state: StreamState, info: { attempt: number; retryInMs?: number; status?: number }): void;
  /** Any byte from the server, keep-alive comments included: the stream is alive. */
  onActivity?(at: number): void;
  fetch?: FetchLike;
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** No byte for this long (the server sends a keep-alive every 15 s): assume the connection died. */
  idleTimeoutMs?: number;
  random?: () => number;
}

/** Exponential backoff with jitter, so dashboards do not all come back in the same instant. */
export function reconnectDelayMs(
  attempt: number,
  initialMs = 1000,
  maxMs = 15_000,
  random = Math.random,
): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

export interface EventStream {
  close(): void;
  /** Drop the current connection and connect again now (e.g. when the tab comes back online). */
  reconnectNow(): void;
}

/**
 * Keeps a stream open: reconnects with backoff when the server restarts or the network drops,
 * stops for good on 401/403 (the token was revoked or lacks the role).
 */
export function openEventStream(options: EventStreamOptions): EventStream {
  const doFetch: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
  const idleTimeoutMs = options.idleTimeoutMs ?? 45_000;
  let closed = false;
  let attempt = 0;
  let controller: AbortController | undefined;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  let serverRetryMs: number | undefined;
  let reader: ReadableStreamDefaultReader<string> | undefined;

  const state = (s: StreamState, info: { retryInMs?: number; status?: number } = {}) =>
    options.onState?.(s, { attempt, ...info });

  const armIdle = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      controller?.abort();
      // Some bodies ignore the abort once streaming; cancelling the reader always ends the read loop.
      void reader?.cancel().catch(() => undefined);
    }, idleTimeoutMs);
  };

  const schedule = () => {
    if (closed) return;
    const delay = reconnectDelayMs(
      attempt,
      serverRetryMs ?? options.initialDelayMs ?? 1000,
      options.maxDelayMs ?? 15_000,
      options.random,
    );
    attempt++;
    state('reconnecting', { retryInMs: delay });
    retryTimer = setTimeout(connect, delay);
  };

  async function connect(): Promise<void> {
    if (closed) return;
    controller = new AbortController();
    const { signal } = controller;
    state(attempt === 0 ? 'connecting' : 'reconnecting');
    try {
      const response = await doFetch(options.url, {
        headers: { authorization: `Bearer ${options.token}`, accept: 'text/event-stream' },
        cache: 'no-store',
        signal,
      });
      if (response.status === 401 || response.status === 403) {
        closed = true;
        state('unauthorized', { status: response.status });
        return;
      }
      if (!response.ok || response.body === null) throw new Error(`HTTP ${response.status}`);
      attempt = 0;
      state('open');
      armIdle();
      const parser = new SseParser();
      reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        armIdle();
        options.onActivity?.(Date.now());
        for (const message of parser.feed(value)) options.onMessage(message);
        if (parser.retryMs !== undefined) serverRetryMs = parser.retryMs;
      }
    } catch {
      // Network error, abort by the idle watchdog or close(): handled below.
    } finally {
      clearTimeout(idleTimer);
    }
    if (!closed) schedule();
  }

  void connect();
  return {
    close() {
      closed = true;
      clearTimeout(retryTimer);
      clearTimeout(idleTimer);
      controller?.abort();
      void reader?.cancel().catch(() => undefined);
      state('closed');
    },
    reconnectNow() {
      if (closed) return;
      clearTimeout(retryTimer);
      attempt = 0;
      if (controller !== undefined && !controller.signal.aborted) {
        controller.abort();
        void reader?.cancel().catch(() => undefined);
      } else void connect();
    },
  };
}
