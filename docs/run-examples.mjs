// Runs every docs/examples/*.ts with Node's type stripping, each in its own
// process with a time limit, and fails if any exits non-zero.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const dir = new URL('./examples/', import.meta.url);
const examples = readdirSync(dir)
  .filter((f) => f.endsWith('.ts'))
  .sort();
let passed = 0;
let failed = 0;
for (const file of examples) {
  const started = Date.now();
  const run = spawnSync(process.execPath, [new URL(file, dir).pathname], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
  });
  const ms = Date.now() - started;
  if (run.status === 0) {
    passed++;
    console.log(`✓ examples/${file} (${ms} ms)`);
  } else {
    failed++;
    console.log(`✗ examples/${file} exited ${run.status ?? run.signal} after ${ms} ms`);
    console.log(run.stdout);
    console.log(run.stderr);
  }
}
console.log(`\nexamples: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 || examples.length === 0 ? 1 : 0);
