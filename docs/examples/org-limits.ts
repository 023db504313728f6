// Keys of one upstream organization share its limits: OpenAI and Anthropic count rpm/tpm per
// organization, not per key, so rotating keys of one org buys no headroom. Runs against the keypool
// mock upstream, which enforces the organization's rpm the way the real APIs do.
import { createKeyPool } from '@keypool/core';
import { createPooledOpenAI, openaiProvider } from '@keypool/provider-openai';
import { memoryStore } from '@keypool/store-memory';
import { startMockUpstream } from '@keypool/testing';

const windowMs = 2_000; // a short window so the example runs in seconds; 60 s in production
const upstream = await startMockUpstream({ windowMs });
const baseURL = `${upstream.url}/v1`;
const [a1, a2, b1] = ['a1', 'a2', 'b1'].map((name) => `sk-example-${name}-0000000000000000`) as [
  string,
  string,
  string,
];
// Upstream: org-a allows 4 requests per window across its keys.
upstream.setOrgLimits('org-a', [a1, a2], { rpm: 4 });

const pool = await createKeyPool({
  store: memoryStore(),
  plugins: [openaiProvider()],
  windowMs,
  keys: [
    // One key of the organization says what the organization allows; the other inherits it.
    { provider: 'openai', secret: a1, alias: 'a1', baseURL, organization: 'org-a', orgLimits: { rpm: 4 } },
    { provider: 'openai', secret: a2, alias: 'a2', baseURL, organization: 'org-a' },
    { provider: 'openai', secret: b1, alias: 'b1', baseURL, organization: 'org-b', priority: 1 },
  ],
  maxWaitMs: 0,
});
pool.on('key:cooldown', (e) =>
  console.log(
    `${e.alias} cools for ${e.cooldownMs} ms${e.via ? ` (429 on ${e.via}, same organization)` : ''}`,
  ),
);

const openai = createPooledOpenAI(pool);
const ask = () =>
  openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] });

// Six calls: org-a (primary) takes 4, its shared limit; the rest go to the fallback org-b.
for (let i = 0; i < 6; i++) await ask();
const sent = (secrets: string[]) => secrets.reduce((n, s) => n + upstream.counts.requests(s), 0);
console.log(
  `org-a got ${sent([a1, a2])} requests, org-b got ${sent([b1])}; 429s: ${upstream.counts.byStatus()[429] ?? 0}`,
);
if (sent([a1, a2]) !== 4 || sent([b1]) !== 2 || upstream.counts.byStatus()[429] !== undefined) {
  throw new Error('expected org-a to get exactly its 4 and no 429');
}
await pool.refresh();
const [orgA] = pool.health().orgs;
console.log(
  `${orgA?.organization}: ${orgA?.usage?.requestsInWindow} of ${orgA?.limits.rpm} requests in the window`,
);

// A 429 on one key of an organization cools all of its keys: the next call goes to org-b.
await new Promise((resolve) => setTimeout(resolve, windowMs));
upstream.setScript(a1, [{ status: 429, retryAfterS: 30 }]);
upstream.setScript(a2, [{ status: 429, retryAfterS: 30 }]);
await ask();
const statuses = pool.health().keys.map((k) => `${k.alias}: ${k.status}`);
console.log(statuses.join(', '));
if (upstream.counts.byStatus()[429] !== 1) throw new Error('expected one 429, not one per key of org-a');

await pool.close();
await upstream.close();
