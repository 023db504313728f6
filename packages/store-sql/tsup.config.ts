import { defineConfig } from 'tsup';

export default defineConfig({
  // The SQLite hot path's worker thread loads its own entry (next to the chunk that starts it).
  entry: ['src/index.ts', 'src/sqlite-hot-worker.ts'],
  format: ['esm'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node22',
  // tsup 9 strips `node:` by default, which breaks `node:sqlite` and friends at run time.
  removeNodeProtocol: false,
});
