import { describe, expect, it } from 'vitest';
import { extractOpenAIUsage } from './usage.js';

describe('extractOpenAIUsage', () => {
  it('reads chat and legacy completions, with cached tokens', () => {
    expect(
      extractOpenAIUsage({
        object: 'chat.completion',
        usage: {
          prompt_tokens: 120,
          completion_tokens: 30,
          total_tokens: 150,
          prompt_tokens_details: { cached_tokens: 100 },
        },
      }),
    ).toEqual({ inputTokens: 120, outputTokens: 30, cachedInputTokens: 100 });
    expect(
      extractOpenAIUsage({ object: 'text_completion', usage: { prompt_tokens: 5, completion_tokens: 7 } }),
    ).toEqual({
      inputTokens: 5,
      outputTokens: 7,
    });
  });

  it('reads embeddings (input only)', () => {
    expect(extractOpenAIUsage({ object: 'list', usage: { prompt_tokens: 8, total_tokens: 8 } })).toEqual({
      inputTokens: 8,
      outputTokens: 0,
    });
  });

  it('reads the Responses API, directly and from response.completed events', () => {
    const usage = { input_tokens: 40, output_tokens: 12, input_tokens_details: { cached_tokens: 32 } };
    expect(extractOpenAIUsage({ object: 'response', usage })).toEqual({
      inputTokens: 40,
      outputTokens: 12,
      cachedInputTokens: 32,
    });
    expect(extractOpenAIUsage({ type: 'response.completed', response: { usage } })).toEqual({
      inputTokens: 40,
      outputTokens: 12,
      cachedInputTokens: 32,
    });
  });

  it('reads the final chunk of a chat stream and ignores the others', () => {
    expect(extractOpenAIUsage({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 4 } })).toEqual({
      inputTokens: 3,
      outputTokens: 4,
    });
    expect(extractOpenAIUsage({ choices: [{ delta: { content: 'hi' } }], usage: null })).toBeUndefined();
    expect(extractOpenAIUsage(null)).toBeUndefined();
    expect(extractOpenAIUsage({ usage: { total: 1 } })).toBeUndefined();
  });
});
