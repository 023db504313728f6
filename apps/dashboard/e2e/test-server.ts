/**
 * What `keypool demo` runs, built from the same parts so a test controls it: the admin API on a
 * real pool (memory store), providers pointed at the mock upstream, synthetic traffic, and the
 * built dashboard served at `/` — plus one token per role and the mock's fault switches.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { type AdminApp, createAdminApp, createLogger, createToken } from '@keypool/admin-api';
import { createKeyPool, generateMasterKey } from '@keypool/core';
import { anthropicProvider } from '@keypool/provider-anthropic';
import { openaiProvider } from '@keypool/provider-openai';
import type { KeyPool, KeySpec } from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import { callMockUpstream, type MockUpstream, startMockUpstream } from '@keypool/testing';
import express from 'express';
import { dashboardDir } from '../index.js';

const packageDir = new URL('..', import.meta.url).pathname;

/** Demo secrets: obviously fake, accepted only by the mock upstream. */
export const DEMO_SECRETS: Record<string, string> = {
  'openai-a': 'sk-demo-aaaaaaaaaaaaaaaaaaaaaaaa0001',
  'openai-b': 'sk-demo-bbbbbbbbbbbbbbbbbbbbbbbb0002',
  'openai-c': 'sk-demo-cccccccccccccccccccccccc0003',
  'anthropic-a': 'sk-ant-demo-dddddddddddddddddddd0004',
};

export interface DashboardServer {
  url: string;
  pool: KeyPool;
  mock: MockUpstream;
  tokens: { admin: string; operator: string; viewer: string };
  /** Requests the synthetic traffic finished, ok or not. */
  calls(): number;
  /** Stop the HTTP server (as a crash or a restart would) and start it again on the same port. */
  restart(downMs?: number): Promise<void>;
  stopTraffic(): void;
  close(): Promise<void>;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** `npm test` builds first; a bare `vitest run` after editing src builds here. */
export async function ensureBuilt(): Promise<void> {
  const index = join(dashboardDir, 'index.html');
  if (existsSync(index) && statSync(index).mtimeMs >= newestMtime(join(packageDir, 'src'))) return;
  // A child process: inside vitest NODE_ENV is "test", which would bundle React's development build.
  const vite = join(dirname(createRequire(import.meta.url).resolve('vite/package.json')), 'bin', 'vite.js');
  const run = spawnSync(process.execPath, [vite, 'build', '--logLevel', 'warn'], {
    cwd: packageDir,
    env: { ...process.env, NODE_ENV: 'production' },
    stdio: 'inherit',
  });
  if (run.status !== 0)
    throw new Error('vite build failed; run `npm run build -w @keypool/dashboard` to see why.');
}

export interface DashboardServerOptions {
  /** Extra quiet keys (for the 500-key bench); they get no traffic of their own. */
  extraKeys?: number;
  /** Synthetic requests per second over the demo keys. */
  rate?: number;
  healthIntervalMs?: number;
}

export async function startDashboardServer(options: DashboardServerOptions = {}): Promise<DashboardServer> {
  const extra = options.extraKeys ?? 0;
  const secrets = { ...DEMO_SECRETS };
  for (let i = 0; i < extra; i++)
    secrets[`bulk-${String(i).padStart(3, '0')}`] = `sk-bulk-${String(i).padStart(24, '0')}x${i}`;
  const mock = await startMockUpstream({ keys: secrets });
  const masterKey = generateMasterKey();
  const store = memoryStore();
  const keys: KeySpec[] = Object.entries(secrets).map(([alias, secret], i) => {
    const anthropic = alias.startsWith('anthropic');
    return {
      provider: anthropic ? 'anthropic' : 'openai',
      alias,
      secret,
      baseURL: anthropic ? mock.url : `${mock.url}/v1`,
      // Bulk keys sit in a fallback tier so the demo keys keep the traffic.
      priority: alias.startsWith('bulk-') ? 1 + (i % 3) : 0,
      limits:
        alias === 'openai-a'
          ? { rpm: 600, tpm: 200_000, monthlyBudgetUsd: 50 }
          : { rpm: 1200, requestsPerDay: 100_000 },
    };
  });
  const pool = await createKeyPool({
    store,
    plugins: [openaiProvider(), anthropicProvider()],
    masterKey,
    keys,
    refreshMs: 200,
  });
  const tokens = {
    admin: (await createToken(store, { name: 'e2e-admin', role: 'admin' })).token,
    operator: (await createToken(store, { name: 'e2e-operator', role: 'operator' })).token,
    viewer: (await createToken(store, { name: 'e2e-viewer', role: 'viewer' })).token,
  };
  const logger = createLogger({ level: 'warn' });
  const makeApp = () =>
    createAdminApp({
      pool,
      masterKey,
      logger,
      healthIntervalMs: options.healthIntervalMs ?? 1000,
      // The wrong-token test and the bench sign in many times from one address.
      auth: { maxFailures: 1000 },
    });

  let admin: AdminApp = makeApp();
  const outer = express();
  outer.use(express.static(dashboardDir, { index: 'index.html', maxAge: 0 }));
  outer.use((req, res, next) => admin(req, res, next));

  let server: Server = createServer(outer);
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;

  // Synthetic traffic, as `keypool demo` sends it: lease, call the mock, report.
  let calls = 0;
  let n = 0;
  const oneCall = async () => {
    n++;
    const provider = n % 4 === 0 ? 'anthropic' : 'openai';
    const model = provider === 'openai' ? 'gpt-4o-mini' : 'claude-3-5-haiku-latest';
    let lease: Awaited<ReturnType<KeyPool['acquire']>>;
    try {
      lease = await pool.acquire({ provider, model, estimatedTokens: 60, maxWaitMs: 500 });
    } catch {
      return;
    }
    try {
      await lease.release(
        await callMockUpstream(mock.url, {
          provider,
          model,
          secret: lease.secret,
          text: `dashboard e2e ${n}`,
        }),
      );
    } finally {
      calls++;
    }
  };
  const traffic = setInterval(() => void oneCall(), Math.max(5, Math.round(1000 / (options.rate ?? 10))));

  const stopServer = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    await admin.close({ graceMs: 0 });
    server.closeAllConnections();
    await closed;
  };

  return {
    url,
    pool,
    mock,
    tokens,
    calls: () => calls,
    async restart(downMs = 1500) {
      await stopServer();
      await new Promise((resolve) => setTimeout(resolve, downMs));
      admin = makeApp();
      server = createServer(outer);
      server.listen(port, '127.0.0.1');
      await new Promise((resolve) => server.once('listening', resolve));
    },
    stopTraffic() {
      clearInterval(traffic);
    },
    async close() {
      clearInterval(traffic);
      await stopServer();
      await pool.close();
      await mock.close();
    },
  };
}
