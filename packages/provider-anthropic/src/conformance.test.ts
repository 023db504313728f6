import Anthropic from '@anthropic-ai/sdk';
import { testProvider } from '@keypool/testing';
import { createAnthropicProvider } from './provider.js';

testProvider('anthropic', () => ({
  provider: createAnthropicProvider(),
  secretPrefix: 'sk-ant-api03-',
  request: ({ text, maxTokens }) => ({
    model: 'claude-haiku-4-5',
    max_tokens: maxTokens,
    messages: [{ role: 'user', content: text }],
  }),
  async call({ secret, baseURL, stream }) {
    const client = new Anthropic({ apiKey: secret, baseURL, maxRetries: 0 });
    const body = {
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [{ role: 'user' as const, content: 'Say hello.' }],
    };
    if (!stream) return client.messages.create(body);
    return client.messages.stream(body).finalMessage();
  },
}));
