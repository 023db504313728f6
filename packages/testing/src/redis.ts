import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { isServiceAvailable, serviceUrls } from './services.js';

/**
 * Whether the shared Redis answers at `url` (default KEYPOOL_TEST_REDIS_URL or 127.0.0.1:6379):
 * skipped loudly, or failing under KEYPOOL_REQUIRE_SERVICES=1, when it does not.
 */
export function isRedisAvailable(url: string = serviceUrls.redis): Promise<boolean> {
  return isServiceAvailable('redis', async () => {
    const { Redis } = await import('ioredis');
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1_000 });
    probe.on('error', () => {});
    try {
      await probe.connect();
      await probe.ping();
    } finally {
      probe.disconnect();
    }
  });
}

/** Deletes every key under the hash tag `{prefix}` (SCAN, never KEYS) on the Redis at `url`. */
export async function dropRedisPrefix(prefix: string, url: string = serviceUrls.redis): Promise<void> {
  const { Redis } = await import('ioredis');
  const client = new Redis(url);
  try {
    for await (const keys of client.scanStream({ match: `{${prefix}}*`, count: 1_000 })) {
      if ((keys as string[]).length > 0) await client.del(...(keys as string[]));
    }
  } finally {
    client.disconnect();
  }
}

/**
 * A real Redis Cluster for tests, started from the machine's `redis-server`
 * (KEYPOOL_TEST_REDIS_SERVER names another binary): `masters` nodes on free ports,
 * slots split evenly, no replicas, nothing persisted, everything in a temporary
 * directory that stop() removes. Needs `ioredis` (an optional peer of this package).
 */
export interface RedisClusterHandle {
  /** Seed nodes, e.g. for `new Cluster(cluster.nodes)`; node i serves the i-th slice of the slots. */
  readonly nodes: ReadonlyArray<{ host: string; port: number }>;
  /** `redis-cluster://127.0.0.1:7000,127.0.0.1:7001,…`: the nodes as one string for child processes. */
  readonly url: string;
  /** Index in `nodes` of the master that serves `key` (hash tags honoured). */
  nodeOf(key: string): Promise<number>;
  /** Freezes node `index` (SIGSTOP): connections stay open and nothing answers, as in a stall or partition. */
  pause(index: number): void;
  /** Lets a paused node run again (SIGCONT), with its data. */
  resume(index: number): void;
  stop(): Promise<void>;
}

const host = '127.0.0.1';
const slotCount = 16_384;
const redisServer = () => process.env.KEYPOOL_TEST_REDIS_SERVER ?? 'redis-server';

export async function startRedisCluster({
  masters = 3,
}: {
  masters?: number;
} = {}): Promise<RedisClusterHandle> {
  const { Redis } = await import('ioredis');
  const open = (port: number) =>
    new Redis({ host, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  const dir = await mkdtemp(join(tmpdir(), 'keypool-cluster-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  const stop = async () => {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGCONT'); // a paused node handles SIGTERM only once it runs
        child.kill('SIGTERM');
        await exited;
      }),
    );
    await rm(dir, { recursive: true, force: true });
  };
  const perNode = Math.ceil(slotCount / masters);
  try {
    for (let i = 0; i < masters; i++) {
      // biome-ignore format: options beside their values
      const node = await startOnFreePort(dir, open, ports, (port) => [
        '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      ]);
      ports.push(node.port);
      children.push(node.child);
    }
    const admins = ports.map(open);
    try {
      await Promise.all(admins.map((admin) => admin.connect()));
      await Promise.all(
        admins.map((admin, i) => {
          const count = Math.min(perNode, slotCount - i * perNode);
          const slots = Array.from({ length: count }, (_, s) => String(i * perNode + s));
          return admin.call('CLUSTER', 'ADDSLOTS', ...slots);
        }),
      );
      for (const port of ports.slice(1)) await admins[0]!.call('CLUSTER', 'MEET', host, String(port));
      await waitFor('the cluster nodes to agree (cluster_state:ok)', async () => {
        for (const admin of admins) {
          const info = String(await admin.call('CLUSTER', 'INFO'));
          if (!info.includes('cluster_state:ok') || !info.includes(`cluster_known_nodes:${masters}\r`)) {
            return false;
          }
        }
        return true;
      });
    } finally {
      for (const admin of admins) admin.disconnect();
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const nodes = ports.map((port) => ({ host, port }));
  return {
    nodes,
    url: `redis-cluster://${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`,
    async nodeOf(key) {
      const probe = open(ports[0]!);
      try {
        await probe.connect();
        return Math.floor(Number(await probe.call('CLUSTER', 'KEYSLOT', key)) / perNode);
      } finally {
        probe.disconnect();
      }
    },
    pause: (index) => signal(children, index, 'SIGSTOP'),
    resume: (index) => signal(children, index, 'SIGCONT'),
    stop,
  };
}

function signal(children: ChildProcess[], index: number, name: NodeJS.Signals): void {
  const child = children[index];
  if (!child) throw new Error(`no cluster node ${index} (the cluster has ${children.length})`);
  child.kill(name);
}

/**
 * A standalone Redis of its own (not the shared one on 6379), for tests that change server
 * settings: `extraArgs` go to redis-server as they are (e.g. `['--maxmemory-policy', 'allkeys-lru']`).
 */
export async function startRedisServer(
  extraArgs: readonly string[] = [],
): Promise<{ url: string; port: number; stop(): Promise<void> }> {
  const { Redis } = await import('ioredis');
  const open = (port: number) =>
    new Redis({ host, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  const dir = await mkdtemp(join(tmpdir(), 'keypool-redis-'));
  let port: number;
  let child: ChildProcess;
  try {
    ({ port, child } = await startOnFreePort(dir, open, [], () => extraArgs));
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `redis://${host}:${port}`,
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Seed nodes of a `redis-cluster://host:port,host:port` URL (see RedisClusterHandle.url). */
export function redisClusterNodes(url: string): Array<{ host: string; port: number }> {
  const list = url.replace(/^redis-cluster:\/\//, '');
  return list.split(',').map((node) => {
    const [nodeHost, port] = node.split(':');
    if (!nodeHost || !port || !/^\d+$/.test(port)) {
      throw new Error(`not a redis-cluster:// URL: expected host:port,host:port,… (got "${url}")`);
    }
    return { host: nodeHost, port: Number(port) };
  });
}

/**
 * Whether `redis-server` can run here to start clusters: skipped loudly, or failing under
 * KEYPOOL_REQUIRE_SERVICES=1, when it cannot.
 */
export function isRedisServerAvailable(): Promise<boolean> {
  return isServiceAvailable(`redis-server (for a local Redis Cluster; KEYPOOL_TEST_REDIS_SERVER)`, () =>
    promisify(execFile)(redisServer(), ['--version']),
  );
}

/** Starts a node on a free port; another port when the one picked was taken in the meantime. */
async function startOnFreePort(
  dir: string,
  open: (port: number) => Redis,
  taken: number[],
  argsFor: (port: number) => readonly string[],
): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freeNodePort(taken);
    try {
      return { port, child: await startNode(dir, port, open, argsFor(port)) };
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

async function startNode(
  dir: string,
  port: number,
  open: (port: number) => Redis,
  extraArgs: readonly string[],
): Promise<ChildProcess> {
  const log = join(dir, `${port}.log`);
  // biome-ignore format: options beside their values read better than one per line
  const child = spawn(redisServer(), [
    '--port', String(port), '--bind', host,
    '--dir', dir, '--save', '', '--appendonly', 'no', '--logfile', log,
    ...extraArgs,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  // Bad options are reported on stderr, everything after start-up in the log file.
  let stderr = '';
  child.stderr?.on('data', (chunk) => (stderr += chunk));
  const failed = new Promise<never>((_, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      void readFile(log, 'utf8')
        .catch(() => '')
        .then((tail) =>
          reject(
            new Error(`redis-server on :${port} exited (${code}): ${(stderr + tail).trim().slice(-500)}`),
          ),
        );
    });
  });
  failed.catch(() => {}); // only raced below: an exit after start-up is stop()'s business
  try {
    await Promise.race([
      failed,
      waitFor(`redis-server on :${port} to answer`, async () => {
        const probe = open(port);
        probe.on('error', () => {});
        try {
          await probe.connect();
          return (await probe.ping()) === 'PONG';
        } catch {
          return false;
        } finally {
          probe.disconnect();
        }
      }),
    ]);
  } catch (error) {
    child.kill('SIGKILL'); // never leave a node behind that did not come up
    throw error;
  }
  return child;
}

/** A free port whose cluster bus port (+10000) is free too. */
async function freeNodePort(taken: number[]): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await listen(0);
    if (port > 55_000 || taken.includes(port)) continue;
    if ((await listen(port + 10_000).catch(() => 0)) !== 0) return port;
  }
  throw new Error('no free port pair (port and port + 10000) for a Redis Cluster node');
}

function listen(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
