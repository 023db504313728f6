import type { Usage } from '@keypool/spec';
import { extractOpenAIUsage } from './usage.js';

export type StreamEnd =
  | { kind: 'done'; usage: Usage | undefined }
  | { kind: 'error'; error: unknown; usage: Usage | undefined }
  | { kind: 'cancelled'; usage: Usage | undefined };

export interface UsageTap {
  /** What the caller reads: the upstream's events, minus the usage chunk keypool asked for. */
  readonly stream: ReadableStream<Uint8Array>;
  /** Settles once, when the upstream ends, fails, or the caller cancels. */
  readonly ended: Promise<StreamEnd>;
}

const EVENT_BOUNDARY = /\r?\n\r?\n/;
/** Responses API events after which nothing more comes. */
const RESPONSES_TERMINAL_EVENTS = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/**
 * Wraps an OpenAI server-sent-event body (whose first chunk was already read,
 * to know the key works) and reads usage from the final chunk as it passes.
 * With `stripUsageChunk` (keypool added `include_usage`), the usage-only chunk
 * (`choices: []`) is dropped and the `"usage": null` every other chunk then
 * carries is removed, so the caller sees the stream it asked for.
 */
export function tapStreamUsage(
  first: Uint8Array,
  reader: ReadableStreamDefaultReader<Uint8Array>,
  stripUsageChunk: boolean,
): UsageTap {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let pending = '';
  let usage: Usage | undefined;
  let settle: (end: StreamEnd) => void = () => {};
  const ended = new Promise<StreamEnd>((resolve) => {
    settle = (end) => {
      settle = () => {};
      resolve(end);
    };
  });

  /** Complete events of `text` (after what was pending), rewritten; keeps an incomplete tail pending. */
  const process = (text: string, flush: boolean): string => {
    pending += text;
    const parts = pending.split(EVENT_BOUNDARY);
    pending = flush ? '' : (parts.pop() ?? '');
    let out = '';
    for (const event of parts) {
      if (event === '') continue;
      const kept = processEvent(event);
      if (kept !== undefined) out += `${kept}\n\n`;
    }
    return out;
  };

  const processEvent = (event: string): string | undefined => {
    const dataAt = event.indexOf('data:');
    if (dataAt < 0) return event;
    const data = event.slice(dataAt + 5).trim();
    // The SDK stops reading (and cancels) at the terminal event: the request is complete there.
    if (data === '[DONE]') {
      settle({ kind: 'done', usage });
      return event;
    }
    // Cheap test first: only events that mention usage need parsing.
    if (!event.includes('"usage"')) return event;
    let chunk: Record<string, unknown>;
    try {
      chunk = JSON.parse(data) as Record<string, unknown>;
    } catch {
      return event;
    }
    const found = extractOpenAIUsage(chunk);
    if (found !== undefined) usage = found;
    if (typeof chunk.type === 'string' && RESPONSES_TERMINAL_EVENTS.has(chunk.type))
      settle({ kind: 'done', usage });
    if (!stripUsageChunk || !('usage' in chunk)) return event;
    if (Array.isArray(chunk.choices) && chunk.choices.length === 0 && chunk.usage !== null) return undefined;
    if (chunk.usage === null) {
      delete chunk.usage;
      return `${event.slice(0, dataAt)}data: ${JSON.stringify(chunk)}`;
    }
    return event;
  };

  const enqueue = (controller: ReadableStreamDefaultController<Uint8Array>, text: string) => {
    if (text !== '') controller.enqueue(encoder.encode(text));
  };

  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      enqueue(controller, process(decoder.decode(first, { stream: true }), false));
    },
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          enqueue(controller, process(decoder.decode(), true));
          controller.close();
          settle({ kind: 'done', usage });
          return;
        }
        enqueue(controller, process(decoder.decode(value, { stream: true }), false));
      } catch (error) {
        controller.error(error);
        settle({ kind: 'error', error, usage });
      }
    },
    async cancel(reason) {
      settle({ kind: 'cancelled', usage });
      await reader.cancel(reason).catch(() => {});
    },
  });
  return { stream, ended };
}
