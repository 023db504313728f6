import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/bin.ts'],
  format: ['esm'],
  dts: { entry: 'src/index.ts' },
  clean: true,
  sourcemap: true,
  target: 'node22',
  // The bin needs it; a hashbang is valid (and ignored) at the top of any ES module.
  banner: { js: '#!/usr/bin/env node' },
  // tsup 9 strips `node:` by default, which breaks `node:sqlite` and friends at run time.
  removeNodeProtocol: false,
});
