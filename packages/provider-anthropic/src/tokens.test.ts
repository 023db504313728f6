import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { estimateAnthropicTokens } from './tokens.js';

describe('estimateAnthropicTokens', () => {
  it('counts messages, system and tools at about 3.5 characters a token, plus max_tokens', () => {
    const text = 'x'.repeat(350);
    const estimate = estimateAnthropicTokens({
      model: 'claude-haiku-4-5',
      max_tokens: 1000,
      system: text,
      messages: [{ role: 'user', content: text }],
    });
    // 700 characters → 200 tokens, 4 for the message framing, 1000 of output allowance.
    expect(estimate).toBe(1204);
  });

  it('reads content blocks, tool use input, tool results and tool definitions', () => {
    const small = estimateAnthropicTokens({ max_tokens: 0, messages: [{ role: 'user', content: 'hi' }] });
    const rich = estimateAnthropicTokens({
      max_tokens: 0,
      system: [{ type: 'text', text: 'Be brief.' }],
      tools: [{ name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object' } }],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] },
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 't1', name: 'get_weather', input: { city: 'Paris' } }],
        },
        {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: '18 °C' }] }],
        },
      ],
    });
    expect(rich).toBeGreaterThan(small + 20);
  });

  it('charges a fixed amount per image instead of measuring base64', () => {
    const image = {
      type: 'image',
      source: { type: 'base64', media_type: 'image/png', data: 'A'.repeat(1_000_000) },
    };
    const estimate = estimateAnthropicTokens({
      max_tokens: 0,
      messages: [{ role: 'user', content: [image] }],
    });
    expect(estimate).toBe(1604);
  });

  it('never throws and never goes negative, whatever it is given', () => {
    fc.assert(
      fc.property(fc.anything(), (request) => {
        const estimate = estimateAnthropicTokens(request);
        expect(Number.isFinite(estimate) && estimate >= 0).toBe(true);
      }),
    );
  });
});
