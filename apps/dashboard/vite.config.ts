/// <reference types="vitest/config" />
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// During `npm run dev`, API calls go to a running admin API (`keypool serve` / `keypool demo`).
const api = process.env.KEYPOOL_API_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  // Relative asset URLs so the admin API can serve the bundle under any prefix.
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 600 },
  server: {
    proxy: { '/v1': { target: api, changeOrigin: true }, '/healthz': api, '/readyz': api },
  },
  test: {
    projects: [
      {
        extends: true,
        test: { name: 'unit', environment: 'jsdom', include: ['src/**/*.test.{ts,tsx}'] },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          environment: 'node',
          include: ['e2e/**/*.e2e.test.ts'],
          testTimeout: 30_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
