import { describe, expect, it } from 'vitest';
import { openEventStream, reconnectDelayMs, type SseMessage, SseParser, type StreamState } from './sse.js';

describe('SseParser', () => {
  it('parses events split anywhere across chunks', () => {
    const text =
      'id: 1\nevent: health\ndata: {"status":"healthy"}\n\nid: 2\nevent: key:cooldown\ndata: {"alias":"a"}\n\n';
    for (let cut = 0; cut < text.length; cut++) {
      const parser = new SseParser();
      const got = [...parser.feed(text.slice(0, cut)), ...parser.feed(text.slice(cut))];
      expect(got).toEqual([
        { id: '1', event: 'health', data: '{"status":"healthy"}' },
        { id: '2', event: 'key:cooldown', data: '{"alias":"a"}' },
      ]);
    }
  });

  it('handles CRLF (even split between chunks), comments, multi-line data and retry', () => {
    const parser = new SseParser();
    const got: SseMessage[] = [];
    got.push(...parser.feed(': keep-alive\r\n\r\nretry: 2500\r'));
    got.push(...parser.feed('\ndata: line one\r\ndata:line two\r\n\r'));
    got.push(...parser.feed('\n'));
    expect(got).toEqual([{ event: 'message', data: 'line one\nline two' }]);
    expect(parser.retryMs).toBe(2500);
  });

  it('ignores events without data and unknown fields', () => {
    const parser = new SseParser();
    expect(parser.feed('event: lonely\n\nfoo: bar\ndata: x\n\n')).toEqual([{ event: 'message', data: 'x' }]);
  });
});

describe('reconnectDelayMs', () => {
  it('grows exponentially up to a ceiling, with jitter in the upper half', () => {
    expect(reconnectDelayMs(0, 1000, 15_000, () => 0)).toBe(500);
    expect(reconnectDelayMs(0, 1000, 15_000, () => 1)).toBe(1000);
    expect(reconnectDelayMs(3, 1000, 15_000, () => 1)).toBe(8000);
    expect(reconnectDelayMs(10, 1000, 15_000, () => 1)).toBe(15_000);
  });
});

/** A fake server: each call answers with the next scripted response. */
function scriptedFetch(answers: Array<() => Response | Promise<Response>>) {
  const calls: Array<{ url: string; headers: Record<string, string> }> = [];
  const fetch = async (url: string, init?: RequestInit) => {
    calls.push({ url, headers: init?.headers as Record<string, string> });
    const next = answers.shift();
    if (next === undefined) return new Promise<Response>(() => {});
    return next();
  };
  return { fetch, calls };
}

function streamOf(chunks: string[], { hold = false } = {}): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
      if (!hold) controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

async function until(check: () => boolean, ms = 2000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('openEventStream', () => {
  it('sends the token as a header, never in the URL, and delivers messages', async () => {
    const { fetch, calls } = scriptedFetch([() => streamOf(['event: health\ndata: {}\n\n'], { hold: true })]);
    const messages: SseMessage[] = [];
    const stream = openEventStream({
      url: '/v1/events',
      token: 'kp_abc',
      onMessage: (m) => messages.push(m),
      fetch,
    });
    await until(() => messages.length === 1);
    expect(calls[0]!.url).toBe('/v1/events');
    expect(calls[0]!.headers.authorization).toBe('Bearer kp_abc');
    stream.close();
  });

  it('reconnects after the server ends the stream (restart) and after a refused connection', async () => {
    const { fetch, calls } = scriptedFetch([
      () => streamOf(['event: health\ndata: {"n":1}\n\n']),
      () => Promise.reject(new TypeError('connection refused')),
      () => new Response('down', { status: 503 }),
      () => streamOf(['event: health\ndata: {"n":2}\n\n'], { hold: true }),
    ]);
    const states: StreamState[] = [];
    const data: string[] = [];
    const stream = openEventStream({
      url: '/v1/events',
      token: 't',
      fetch,
      initialDelayMs: 4,
      random: () => 0,
      onMessage: (m) => data.push(m.data),
      onState: (s) => states.push(s),
    });
    await until(() => data.length === 2);
    expect(data).toEqual(['{"n":1}', '{"n":2}']);
    expect(calls).toHaveLength(4);
    expect(states[0]).toBe('connecting');
    expect(states).toContain('reconnecting');
    expect(states.at(-1)).toBe('open');
    stream.close();
    expect(states.at(-1)).toBe('closed');
  });

  it('stops for good when the token is refused', async () => {
    const { fetch, calls } = scriptedFetch([() => new Response('{}', { status: 401 })]);
    const states: StreamState[] = [];
    openEventStream({
      url: '/v1/events',
      token: 'bad',
      fetch,
      initialDelayMs: 1,
      onMessage: () => {},
      onState: (s) => states.push(s),
    });
    await until(() => states.includes('unauthorized'));
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toHaveLength(1);
  });

  it('drops a connection that went silent and connects again', async () => {
    const { fetch, calls } = scriptedFetch([
      () => streamOf([': hello\n\n'], { hold: true }),
      () => streamOf(['data: back\n\n'], { hold: true }),
    ]);
    const data: string[] = [];
    const stream = openEventStream({
      url: '/e',
      token: 't',
      fetch,
      idleTimeoutMs: 30,
      initialDelayMs: 2,
      random: () => 0,
      onMessage: (m) => data.push(m.data),
    });
    await until(() => data.includes('back'));
    expect(calls).toHaveLength(2);
    stream.close();
  });
});
