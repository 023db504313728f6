import { createLogger, startServer } from '@keypool/admin-api';
import type { KeyPool, KeySpec } from '@keypool/spec';
import { callMockUpstream, startMockUpstream } from '@keypool/testing';
import { type GlobalOptions, openPool } from '../open-pool.js';
import {
  builtDashboard,
  describeStart,
  poolBehaviourOptions,
  type ServeOptions,
  stopOnSignals,
} from './serve.js';

export interface DemoOptions extends GlobalOptions, Pick<ServeOptions, 'lastResort' | 'probeIntervalMs'> {
  port: number;
  host: string;
  /** Stop after this many seconds (tests, CI); default: run until Ctrl-C. */
  duration?: number;
  /** Synthetic requests per second. */
  rate: number;
}

/** Demo secrets: obviously fake, accepted only by the mock upstream. */
const DEMO_KEYS = {
  'demo-openai-a': 'sk-demo-aaaaaaaaaaaaaaaaaaaaaaaa0001',
  'demo-openai-b': 'sk-demo-bbbbbbbbbbbbbbbbbbbbbbbb0002',
  'demo-openai-flaky': 'sk-demo-cccccccccccccccccccccccc0003',
  'demo-openai-revoked': 'sk-demo-dddddddddddddddddddddddd0004',
  'demo-anthropic': 'sk-ant-demo-eeeeeeeeeeeeeeeeeeeeee0005',
};

const DEMO_ORG = 'org-demo';
const DEMO_ORG_RPM = 150;

/** One synthetic call: lease, call the mock upstream the way a client without the SDK would, report. */
async function oneCall(
  pool: KeyPool,
  baseURL: string,
  provider: 'openai' | 'anthropic',
  n: number,
): Promise<void> {
  const model = provider === 'openai' ? 'gpt-4o-mini' : 'claude-3-5-haiku-latest';
  const lease = await pool.acquire({
    provider,
    model,
    estimatedTokens: 60,
    affinity: `case-${n % 7}`,
    maxWaitMs: 2000,
  });
  await lease.release(
    await callMockUpstream(baseURL, { provider, model, secret: lease.secret, text: `demo request ${n}` }),
  );
}

export async function demo(options: DemoOptions): Promise<void> {
  const mock = await startMockUpstream({ keys: DEMO_KEYS });
  // Faults so the dashboard has something to show: rate limits, a flaky key, a revoked key.
  mock.setScript('demo-openai-b', {
    steps: ['ok', 'ok', 'ok', { status: 429, retryAfterS: 5 }],
    repeat: true,
  });
  mock.setScript('demo-openai-flaky', { steps: ['ok', 500, 'ok', 503, 'ok', 'ok'], repeat: true });
  mock.setScript('demo-openai-revoked', { steps: [401], repeat: true });
  // a and b are one organization upstream: they share its rpm, and b's 429s cool a too.
  mock.setOrgLimits(DEMO_ORG, ['demo-openai-a', 'demo-openai-b'], { rpm: DEMO_ORG_RPM });
  const keys: KeySpec[] = Object.entries(DEMO_KEYS).map(([alias, secret]) => ({
    provider: alias.includes('anthropic') ? 'anthropic' : 'openai',
    alias,
    secret,
    baseURL: alias.includes('anthropic') ? mock.url : `${mock.url}/v1`,
    limits: { rpm: 120 },
    ...(alias === 'demo-openai-a' && { organization: DEMO_ORG, orgLimits: { rpm: DEMO_ORG_RPM } }),
    ...(alias === 'demo-openai-b' && { organization: DEMO_ORG }),
  }));
  const opened = await openPool(options, { keys, ...poolBehaviourOptions(options) });
  const dashboard = builtDashboard();
  const running = await startServer({
    pool: opened.pool,
    masterKey: opened.masterKeys,
    port: options.port,
    host: options.host,
    logger: createLogger({ level: process.env.LOG_LEVEL ?? 'warn' }),
    healthIntervalMs: 2000,
    ...(dashboard !== undefined && { dashboardDir: dashboard }),
  });
  if (options.json) {
    console.log(
      JSON.stringify({
        url: running.url,
        ...(dashboard !== undefined && { dashboard: `${running.url}/` }),
        upstream: mock.url,
        adminToken: running.adminToken,
      }),
    );
  } else {
    console.log(
      `keypool demo: mock upstream on ${mock.url}, ${keys.length} demo keys, synthetic traffic at ${options.rate}/s`,
    );
    describeStart(opened, running, dashboard, (line) => console.log(line), options);
    if (running.adminToken === undefined) {
      console.log(
        '  (the store already had an admin token; use it, or `keypool tokens create --name me --role admin`)',
      );
    }
    console.log(`  Watch: curl -N -H "Authorization: Bearer <token>" ${running.url}/v1/events`);
  }

  let n = 0;
  let calls = 0;
  let failures = 0;
  const traffic = setInterval(
    () => {
      n++;
      const provider = n % 5 === 0 ? 'anthropic' : 'openai';
      oneCall(opened.pool, mock.url, provider, n).then(
        () => calls++,
        () => failures++,
      );
    },
    Math.max(10, Math.round(1000 / options.rate)),
  );
  const stop = async () => {
    clearInterval(traffic);
    await running.close();
    await mock.close();
    if (!options.json) console.log(`demo stopped after ${calls} calls (${failures} found no key).`);
  };
  if (options.duration !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, options.duration! * 1000));
    await stop();
    return;
  }
  stopOnSignals(stop);
}
