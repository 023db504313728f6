/**
 * Runs every ```sh block of the docs/api pages against a live admin API (memory
 * store, providers pointed at the mock upstream) and checks each answer's status.
 * Fence words: `expect=<status>` (default: any 2xx) and `save=NAME=field` (a JSON
 * field of the answer, exported to the next blocks as $NAME).
 *
 *   npm exec -- node docs/api/run-examples.mjs
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createLogger, createToken, startServer } from '@keypool/admin-api';
import { createKeyPool, generateMasterKey } from '@keypool/core';
import { anthropicProvider } from '@keypool/provider-anthropic';
import { openaiProvider } from '@keypool/provider-openai';
import { memoryStore } from '@keypool/store-memory';
import { startMockUpstream } from '@keypool/testing';

const here = dirname(fileURLToPath(import.meta.url));
const PAGES = ['system.md', 'keys.md', 'pools.md', 'tokens.md', 'leases.md', 'usage.md', 'events.md'];
const run = promisify(execFile);

const mock = await startMockUpstream({
  keys: { a: 'sk-docs-aaaaaaaaaaaaaaaaaaaa0001', b: 'sk-docs-bbbbbbbbbbbbbbbbbbbb0002' },
});
const store = memoryStore();
const masterKey = generateMasterKey();
const pool = await createKeyPool({ store, plugins: [openaiProvider(), anthropicProvider()], masterKey });
const running = await startServer({ pool, masterKey, port: 0, logger: createLogger({ level: 'silent' }) });
const service = await createToken(store, { name: 'docs-service', role: 'service' });
const scratch = mkdtempSync(join(tmpdir(), 'keypool-docs-'));

// `curl` in the blocks writes its body to stdout and its status to a file the runner reads.
const prelude = `curl() { command curl -sS -o "$KP_BODY" -w '%{http_code}' "$@" > "$KP_STATUS"; local rc=$?; cat "$KP_BODY" 2>/dev/null; [ $rc -eq 28 ] && return 0; return $rc; }\n`;
const env = {
  ...process.env,
  KEYPOOL_URL: running.url,
  ADMIN_TOKEN: running.adminToken,
  SERVICE_TOKEN: service.token,
  UPSTREAM: mock.url,
  KP_BODY: join(scratch, 'body'),
  KP_STATUS: join(scratch, 'status'),
};

let failures = 0;
let count = 0;
try {
  for (const page of PAGES) {
    const text = readFileSync(join(here, page), 'utf8');
    for (const match of text.matchAll(/```sh([^\n]*)\n([\s\S]*?)```/g)) {
      count++;
      const words = match[1].trim().split(/\s+/).filter(Boolean);
      const expected = words.find((w) => w.startsWith('expect='))?.slice('expect='.length);
      const saves = words.filter((w) => w.startsWith('save=')).map((w) => w.slice('save='.length).split('='));
      const block = match[2];
      let status = 'none';
      let body = '';
      let error = '';
      try {
        await run('bash', ['-c', prelude + block], { env, timeout: 10_000 });
      } catch (e) {
        error = e.stderr || e.message;
      }
      try {
        status = readFileSync(env.KP_STATUS, 'utf8').trim();
        body = readFileSync(env.KP_BODY, 'utf8');
      } catch {}
      rmSync(env.KP_STATUS, { force: true });
      rmSync(env.KP_BODY, { force: true });
      const ok = expected === undefined ? /^2\d\d$/.test(status) : status === expected;
      const first = block.split('\n')[0].slice(0, 90);
      console.log(`${ok && !error ? 'ok  ' : 'FAIL'} ${page} ${status} ${first}`);
      if (!ok || error) {
        failures++;
        console.log(`     expected ${expected ?? '2xx'}; body: ${body.slice(0, 300)} ${error}`);
        continue;
      }
      for (const [name, field] of saves) {
        const value = JSON.parse(body)[field];
        if (value === undefined) {
          failures++;
          console.log(`     no field "${field}" in the answer to save as $${name}`);
        } else env[name] = String(value);
      }
    }
  }
} finally {
  await running.close();
  await mock.close();
  rmSync(scratch, { recursive: true, force: true });
}
console.log(`${count - failures}/${count} examples passed`);
if (failures > 0 || count === 0) process.exitCode = 1;
