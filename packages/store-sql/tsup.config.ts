import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node22',
  // tsup 9 strips `node:` by default, which breaks `node:sqlite` and friends at run time.
  removeNodeProtocol: false,
});
