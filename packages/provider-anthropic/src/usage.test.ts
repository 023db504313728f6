import { describe, expect, it } from 'vitest';
import { StreamWatcher } from './stream-usage.js';
import { extractAnthropicUsage } from './usage.js';

describe('extractAnthropicUsage', () => {
  it('adds cached tokens to input and reports cache reads and writes apart', () => {
    const usage = extractAnthropicUsage({
      type: 'message',
      usage: {
        input_tokens: 10,
        output_tokens: 20,
        cache_read_input_tokens: 100,
        cache_creation_input_tokens: 5,
      },
    });
    expect(usage).toEqual({
      inputTokens: 115,
      outputTokens: 20,
      cachedInputTokens: 100,
      cacheWriteInputTokens: 5,
    });
  });

  it('reports cache writes, and the 1-hour part of them from cache_creation', () => {
    const usage = extractAnthropicUsage({
      type: 'message',
      usage: {
        input_tokens: 10,
        output_tokens: 20,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 300,
        cache_creation: { ephemeral_5m_input_tokens: 100, ephemeral_1h_input_tokens: 200 },
      },
    });
    expect(usage).toEqual({
      inputTokens: 310,
      outputTokens: 20,
      cacheWriteInputTokens: 300,
      cacheWrite1hInputTokens: 200,
    });
    // Without the breakdown every write counts at the 5-minute rate; without the total, the breakdown sums.
    expect(
      extractAnthropicUsage({
        usage: { input_tokens: 1, output_tokens: 1, cache_creation_input_tokens: 40 },
      }),
    ).toEqual({ inputTokens: 41, outputTokens: 1, cacheWriteInputTokens: 40 });
    expect(
      extractAnthropicUsage({
        usage: {
          input_tokens: 1,
          output_tokens: 1,
          cache_creation: { ephemeral_5m_input_tokens: 5, ephemeral_1h_input_tokens: 7 },
        },
      }),
    ).toEqual({ inputTokens: 13, outputTokens: 1, cacheWriteInputTokens: 12, cacheWrite1hInputTokens: 7 });
  });

  it('reads message_start and message_delta events', () => {
    expect(
      extractAnthropicUsage({
        type: 'message_start',
        message: { usage: { input_tokens: 9, output_tokens: 1 } },
      }),
    ).toEqual({
      inputTokens: 9,
      outputTokens: 1,
    });
    expect(extractAnthropicUsage({ type: 'message_delta', usage: { output_tokens: 42 } })).toEqual({
      inputTokens: 0,
      outputTokens: 42,
    });
  });

  it('returns undefined when there is no usage', () => {
    expect(extractAnthropicUsage({ input_tokens: 12 })).toBeUndefined();
    expect(extractAnthropicUsage(null)).toBeUndefined();
  });
});

function sse(events: Array<[string, unknown]>): string {
  return events.map(([name, data]) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`).join('');
}

describe('StreamWatcher', () => {
  const stream = sse([
    [
      'message_start',
      {
        type: 'message_start',
        message: { usage: { input_tokens: 12, output_tokens: 1, cache_read_input_tokens: 3 } },
      },
    ],
    [
      'content_block_start',
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    ],
    ['ping', { type: 'ping' }],
    [
      'content_block_delta',
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hi' } },
    ],
    ['content_block_stop', { type: 'content_block_stop', index: 0 }],
    [
      'message_delta',
      { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 7 } },
    ],
    ['message_stop', { type: 'message_stop' }],
  ]);

  it('collects usage however the bytes are cut', () => {
    const bytes = new TextEncoder().encode(stream);
    for (const size of [1, 7, 64, bytes.length]) {
      const watcher = new StreamWatcher();
      for (let at = 0; at < bytes.length; at += size) watcher.push(bytes.subarray(at, at + size));
      expect(watcher.events).toBe(7);
      expect(watcher.usage.usage).toEqual({ inputTokens: 15, outputTokens: 7, cachedInputTokens: 3 });
      expect(watcher.error).toBeUndefined();
    }
  });

  it('keeps message_start’s cache TTL breakdown under message_delta’s totals', () => {
    const watcher = new StreamWatcher();
    watcher.push(
      new TextEncoder().encode(
        sse([
          [
            'message_start',
            {
              type: 'message_start',
              message: {
                usage: {
                  input_tokens: 2,
                  output_tokens: 1,
                  cache_creation_input_tokens: 150,
                  cache_creation: { ephemeral_5m_input_tokens: 50, ephemeral_1h_input_tokens: 100 },
                },
              },
            },
          ],
          [
            'message_delta',
            {
              type: 'message_delta',
              usage: { input_tokens: 2, output_tokens: 9, cache_creation_input_tokens: 150 },
            },
          ],
        ]),
      ),
    );
    expect(watcher.usage.usage).toEqual({
      inputTokens: 152,
      outputTokens: 9,
      cacheWriteInputTokens: 150,
      cacheWrite1hInputTokens: 100,
    });
  });

  it('counts an event only once it is complete', () => {
    const watcher = new StreamWatcher();
    watcher.push(new TextEncoder().encode('event: message_start\ndata: {"type":"message_st'));
    expect(watcher.events).toBe(0);
    watcher.push(new TextEncoder().encode('art","message":{"usage":{"input_tokens":4}}}\r\n\r\n'));
    expect(watcher.events).toBe(1);
    expect(watcher.usage.usage).toEqual({ inputTokens: 4, outputTokens: 0 });
  });

  it('notes an error event', () => {
    const watcher = new StreamWatcher();
    watcher.push(
      new TextEncoder().encode(
        sse([['error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }]]),
      ),
    );
    expect(watcher.error).toMatchObject({ status: 529, code: 'overloaded_error' });
  });
});
