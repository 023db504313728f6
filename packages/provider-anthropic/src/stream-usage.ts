import type { UpstreamOutcome } from '@keypool/spec';
import { describeAnthropicResponse } from './describe-error.js';
import { StreamUsage } from './usage.js';

/** The SSE events whose data we need; the rest (deltas, pings) pass by unparsed. */
const WATCHED = new Set(['message_start', 'message_delta', 'error']);

/**
 * Watches the bytes of an Anthropic SSE stream as they pass to the caller,
 * without changing them: counts complete events (so the pooled client knows
 * when the first one would reach the caller), collects usage from
 * `message_start` / `message_delta`, and notes an `event: error`.
 */
export class StreamWatcher {
  readonly usage = new StreamUsage();
  events = 0;
  /** Set when the stream carried an `event: error` (e.g. `overloaded_error` mid-stream). */
  error: UpstreamOutcome | undefined;
  private readonly decoder = new TextDecoder();
  private buffer = '';

  push(chunk: Uint8Array): void {
    this.buffer += this.decoder.decode(chunk, { stream: true });
    let end = this.eventEnd();
    while (end !== undefined) {
      const raw = this.buffer.slice(0, end.at);
      this.buffer = this.buffer.slice(end.at + end.length);
      this.onEvent(raw);
      end = this.eventEnd();
    }
  }

  /** Events end at a blank line; servers may use \n, \r\n or \r. */
  private eventEnd(): { at: number; length: number } | undefined {
    const match = /\r\n\r\n|\n\n|\r\r/.exec(this.buffer);
    return match ? { at: match.index, length: match[0].length } : undefined;
  }

  private onEvent(raw: string): void {
    let name: string | undefined;
    let data = '';
    for (const line of raw.split(/\r\n|\n|\r/)) {
      if (line.startsWith('event:')) name = line.slice(6).trim();
      else if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(5).trimStart();
    }
    if (name === undefined && data === '') return; // a comment or keep-alive
    this.events++;
    if (name !== undefined && !WATCHED.has(name)) return;
    let payload: { type?: string; message?: { usage?: object }; usage?: object };
    try {
      payload = JSON.parse(data);
    } catch {
      return;
    }
    const type = name ?? payload.type;
    if (type === 'message_start') this.usage.add(payload.message?.usage);
    else if (type === 'message_delta') this.usage.add(payload.usage);
    else if (type === 'error') this.error ??= describeAnthropicResponse(undefined, payload);
  }
}
