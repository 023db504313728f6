// Two pools sharing one Redis, as two processes of a fleet would: a key's limit
// holds across both, and an operator's change made through one reaches the other.
import { createKeyPool, generateMasterKey, NoKeyAvailableError } from '@keypool/core';
import { redisStore } from '@keypool/store-redis';

const prefix = `docs-fleet-${process.pid}`; // one namespace per deployment (here: per run)
const masterKey = process.env.KEYPOOL_MASTER_KEY ?? generateMasterKey();
const keys = [
  { provider: 'openai', secret: 'sk-example-fleet-0000000000000', alias: 'shared', limits: { rpm: 3 } },
];

const worker1 = await createKeyPool({
  store: redisStore({ prefix }),
  keys,
  masterKey,
  maxWaitMs: 0,
  refreshMs: 200,
});
const worker2 = await createKeyPool({
  store: redisStore({ prefix }),
  keys,
  masterKey,
  maxWaitMs: 0,
  refreshMs: 200,
});

let served = 0;
let refused = 0;
for (const pool of [worker1, worker2, worker1, worker2, worker1, worker2]) {
  try {
    const lease = await pool.acquire({ provider: 'openai' });
    await lease.release({ ok: true, usage: { inputTokens: 10, outputTokens: 2 } });
    served++;
  } catch (error) {
    if (!(error instanceof NoKeyAvailableError)) throw error;
    refused++;
  }
}
console.log(`rpm 3 across two workers: ${served} served, ${refused} refused`);

const [key] = worker1.keys();
await worker1.disableKey(key!.id, 'rotating');
await new Promise((resolve) => setTimeout(resolve, 500));
console.log(`worker2 sees the key as ${worker2.health().keys[0]?.status}`);

await worker1.close();
await worker2.close();
if (served !== 3 || refused !== 3) throw new Error('the fleet-wide limit did not hold');
