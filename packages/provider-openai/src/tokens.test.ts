import { describe, expect, it } from 'vitest';
import { DEFAULT_OUTPUT_TOKENS, estimateOpenAITokens } from './tokens.js';

describe('estimateOpenAITokens', () => {
  it('counts chat messages with the tokenizer and adds the requested output', () => {
    const tokens = estimateOpenAITokens({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Say hello to the world.' },
      ],
      max_tokens: 50,
    });
    // "You are terse." ≈ 4 tokens, the question ≈ 6, plus framing (3 + 4 per message) and 50 out.
    expect(tokens).toBeGreaterThan(50 + 11 + 8);
    expect(tokens).toBeLessThan(50 + 30);
  });

  it('prefers max_completion_tokens and multiplies by n', () => {
    const base = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };
    const one = estimateOpenAITokens({ ...base, max_completion_tokens: 100, max_tokens: 5 });
    const three = estimateOpenAITokens({ ...base, max_completion_tokens: 100, n: 3 });
    expect(three - one).toBe(200);
  });

  it('reserves a default output allowance when the request sets none', () => {
    const tokens = estimateOpenAITokens({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
    expect(tokens).toBeGreaterThan(DEFAULT_OUTPUT_TOKENS);
    expect(tokens).toBeLessThan(DEFAULT_OUTPUT_TOKENS + 20);
  });

  it('reads Responses API input, instructions and max_output_tokens', () => {
    const plain = estimateOpenAITokens({
      model: 'gpt-5',
      input: 'Write a haiku about keys.',
      max_output_tokens: 40,
    });
    expect(plain).toBeGreaterThan(40);
    const items = estimateOpenAITokens({
      model: 'gpt-5',
      instructions: 'Be brief.',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'Write a haiku about keys.' }] }],
      max_output_tokens: 40,
    });
    expect(items).toBeGreaterThan(plain);
  });

  it('gives embeddings no output allowance and counts every input', () => {
    const one = estimateOpenAITokens({ model: 'text-embedding-3-small', input: 'hello world' });
    const two = estimateOpenAITokens({
      model: 'text-embedding-3-small',
      input: ['hello world', 'hello world'],
    });
    expect(one).toBe(2);
    expect(two).toBe(4);
    expect(estimateOpenAITokens({ model: 'text-embedding-3-small', input: [[1, 2, 3]] })).toBe(3);
  });

  it('counts images at a fixed cost and tools by their JSON', () => {
    const text = { type: 'text', text: 'What is this?' };
    const withImage = estimateOpenAITokens({
      model: 'gpt-4o',
      messages: [
        { role: 'user', content: [text, { type: 'image_url', image_url: { url: 'https://x/y.png' } }] },
      ],
      max_tokens: 1,
    });
    const without = estimateOpenAITokens({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: [text] }],
      max_tokens: 1,
    });
    expect(withImage - without).toBe(765);
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }];
    expect(
      estimateOpenAITokens({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'x' }],
        tools,
        max_tokens: 1,
      }),
    ).toBeGreaterThan(
      estimateOpenAITokens({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }),
    );
  });

  it('estimates very large inputs at about four characters a token', () => {
    const content = 'lorem ipsum '.repeat(10_000); // 120k chars
    const tokens = estimateOpenAITokens({
      model: 'gpt-4o',
      messages: [{ role: 'user', content }],
      max_tokens: 0,
    });
    expect(tokens).toBeGreaterThanOrEqual(30_000);
    expect(tokens).toBeLessThan(30_020);
  });

  it('returns 0 for what is not a request body', () => {
    expect(estimateOpenAITokens(undefined)).toBe(0);
    expect(estimateOpenAITokens('text')).toBe(0);
  });
});
