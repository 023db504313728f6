// Keys sealed at rest in an embedded SQLite file: the pool survives a restart,
// and the file holds no plaintext secret.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeyPool, generateMasterKey } from '@keypool/core';
import { sqlStore } from '@keypool/store-sql';

const dir = mkdtempSync(join(tmpdir(), 'keypool-docs-'));
const url = `sqlite:${join(dir, 'keypool.db')}`;
const masterKey = generateMasterKey(); // in production: KEYPOOL_MASTER_KEY
const secret = 'sk-example-sqlite-000000000000';

const first = await createKeyPool({ store: sqlStore({ url, migrate: true }), masterKey });
const added = await first.addKey({ provider: 'openai', secret, alias: 'primary', limits: { rpm: 60 } });
console.log(`stored ${added.alias} as ${added.maskedSecret}`);
await first.close();

const second = await createKeyPool({ store: sqlStore({ url }), masterKey });
const lease = await second.acquire({ provider: 'openai' });
console.log(`after a restart, leased ${lease.alias}; secret intact: ${lease.secret === secret}`);
await lease.release({ ok: true, usage: { inputTokens: 5, outputTokens: 5 } });
await second.close();

const bytes = readFileSync(join(dir, 'keypool.db')).toString('latin1');
console.log(`plaintext secret in the database file: ${bytes.includes(secret)}`);
rmSync(dir, { recursive: true, force: true });
if (bytes.includes(secret) || lease.secret !== secret) throw new Error('unexpected');
