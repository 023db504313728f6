import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger, type RunningServer, startServer } from '@keypool/admin-api';
import type { KeyPoolOptions } from '@keypool/core';
import { dashboardDir } from '@keypool/dashboard';
import { formatDuration } from '../duration.js';
import { type GlobalOptions, type OpenedPool, openPool } from '../open-pool.js';
import { displayUrl } from '../store-url.js';

export interface ServeOptions extends GlobalOptions {
  port: number;
  host: string;
  /** The pool's `lastResort`. */
  lastResort?: boolean;
  /** The pool's `probes.intervalMs`; absent = no background probes. */
  probeIntervalMs?: number;
}

/** The built dashboard, when there is one (a clone builds it with `npm start`). */
export function builtDashboard(): string | undefined {
  return existsSync(join(dashboardDir, 'index.html')) ? dashboardDir : undefined;
}

/**
 * Says where things are, once, in words: store, master key, URL, the pool options turned on,
 * and the first admin token.
 */
export function describeStart(
  opened: OpenedPool,
  running: RunningServer,
  dashboard: string | undefined,
  say: (line: string) => void,
  enabled: Pick<ServeOptions, 'lastResort' | 'probeIntervalMs'> = {},
): void {
  say(`keypool admin API on ${running.url}`);
  say(
    dashboard !== undefined
      ? `  dashboard:  ${running.url}/ (sign in with an admin, operator or viewer token)`
      : '  dashboard:  not built (`npm run build -w @keypool/dashboard`), so / serves nothing',
  );
  say(`  store:      ${displayUrl(opened.storeUrl)}`);
  const { masters } = opened;
  if (masters.source === 'env') say('  master key: from KEYPOOL_MASTER_KEY');
  else if (masters.source === 'ephemeral') say('  master key: throw-away (the memory store keeps nothing)');
  else if (masters.source === 'generated') {
    say(
      `  master key: generated at ${masters.file} (mode 0600). Back it up: without it the stored secrets are lost.`,
    );
  } else say(`  master key: ${masters.file}`);
  if (masters.keys.length > 1) say('  rotation under way: finish it with `keypool rotate-master-key`.');
  if (enabled.lastResort === true) {
    say(
      '  lastResort: on (with no key eligible, the one whose 429 cooldown or open breaker ends soonest serves; event key:last-resort)',
    );
  }
  if (enabled.probeIntervalMs !== undefined) {
    say(
      `  probes:     every ${formatDuration(enabled.probeIntervalMs)} (invalid, exhausted and breaker-open keys; a pass brings one back: event probe:passed, audit key.probe)`,
    );
  }
  say(`  OpenAPI:    ${running.url}/v1/openapi.json`);
  if (running.adminToken !== undefined) {
    say('');
    say('  First start: an admin token was created. It is shown ONCE; only its hash is stored:');
    say('');
    say(`    ${running.adminToken}`);
    say('');
    say(`  Try: curl -H "Authorization: Bearer ${running.adminToken}" ${running.url}/v1/health`);
  }
  say('');
}

/** Stops gracefully on SIGINT/SIGTERM; a second signal exits at once. */
export function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(130);
    stopping = true;
    console.error(`\n${signal}: finishing in-flight requests (again to force)…`);
    stop().then(
      () => process.exit(0),
      (error) => {
        console.error(`keypool: shutdown failed: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** The pool options behind --last-resort and --probe-interval. */
export function poolBehaviourOptions(
  options: Pick<ServeOptions, 'lastResort' | 'probeIntervalMs'>,
): Pick<KeyPoolOptions, 'lastResort' | 'probes'> {
  return {
    lastResort: options.lastResort === true,
    ...(options.probeIntervalMs !== undefined && { probes: { intervalMs: options.probeIntervalMs } }),
  };
}

export async function serve(options: ServeOptions): Promise<void> {
  const opened = await openPool(options, poolBehaviourOptions(options));
  const dashboard = builtDashboard();
  let running: RunningServer;
  try {
    running = await startServer({
      pool: opened.pool,
      masterKey: opened.masterKeys,
      port: options.port,
      host: options.host,
      logger: createLogger(),
      ...(dashboard !== undefined && { dashboardDir: dashboard }),
    });
  } catch (error) {
    await opened.pool.close();
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw Object.assign(
        new Error(`Port ${options.port} on ${options.host} is in use: pick another with --port.`),
        {
          code: 'EADDRINUSE',
        },
      );
    }
    throw error;
  }
  if (options.json) {
    console.log(
      JSON.stringify({
        url: running.url,
        ...(dashboard !== undefined && { dashboard: `${running.url}/` }),
        store: displayUrl(opened.storeUrl),
        masterKey: opened.masters.file ?? opened.masters.source,
        lastResort: options.lastResort === true,
        ...(options.probeIntervalMs !== undefined && { probeIntervalMs: options.probeIntervalMs }),
        ...(running.adminToken !== undefined && { adminToken: running.adminToken }),
      }),
    );
  } else {
    describeStart(opened, running, dashboard, (line) => console.log(line), options);
  }
  stopOnSignals(() => running.close());
}
