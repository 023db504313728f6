// Runs every bench/*.bench.mjs (or those named on the command line) one after
// another in its own Node process with --expose-gc, so they never share a heap.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const wanted = process.argv.slice(2);
const files = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f.endsWith('.bench.mjs'))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)));
if (files.length === 0) {
  console.error(
    `No bench matches ${wanted.join(', ')}. Available: ${readdirSync(new URL('.', import.meta.url))
      .filter((f) => f.endsWith('.bench.mjs'))
      .join(', ')}`,
  );
  process.exit(1);
}
let failed = 0;
for (const file of files) {
  console.log(`\n== bench/${file}`);
  const run = spawnSync(process.execPath, ['--expose-gc', new URL(file, import.meta.url).pathname], {
    stdio: 'inherit',
  });
  if (run.status !== 0) failed++;
}
console.log(`\nResults are in bench/results/. ${files.length - failed} of ${files.length} benches finished.`);
process.exit(failed > 0 ? 1 : 0);
