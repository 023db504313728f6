// @keypool/dashboard: bundle size, first load and responsiveness with 500 keys and ~20 events/s,
// in Debian's chromium (playwright-core) against the admin API with synthetic traffic
// (apps/dashboard/e2e/test-server.ts: the same parts as `keypool demo`).
// Targets (issue 7): first load under 1 s on localhost with 500 keys; bundle size reported; the
// page stays responsive with 500 keys and 20 events/s.
// Run: npm run build -w @keypool/dashboard && npm exec -- node bench/dashboard.bench.mjs
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { findChromium, launchChromium } from '../apps/dashboard/e2e/browser.ts';
import { ensureBuilt, startDashboardServer } from '../apps/dashboard/e2e/test-server.ts';
import { dashboardDir } from '../apps/dashboard/index.js';

const KEYS = 500;
const LOADS = Number(process.env.KEYPOOL_BENCH_LOADS ?? 7);
const WATCH_MS = Number(process.env.KEYPOOL_BENCH_WATCH_MS ?? 10_000);
const SCREENFUL = 15;
const RATE = 10; // requests/s; each is a lease:acquired and a lease:released event
const out = new URL('./results/', import.meta.url).pathname;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? undefined : s[Math.floor((s.length - 1) / 2)];
};
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? undefined : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const r1 = (x) => (x === undefined ? undefined : Math.round(x * 10) / 10);

function bundleSize() {
  const files = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else files.push(path);
    }
  };
  walk(dashboardDir);
  const rows = files.map((path) => {
    const bytes = readFileSync(path);
    return {
      file: path.slice(dashboardDir.length + 1),
      raw: bytes.length,
      gzip: gzipSync(bytes, { level: 9 }).length,
    };
  });
  const total = rows.reduce((t, r) => ({ raw: t.raw + r.raw, gzip: t.gzip + r.gzip }), { raw: 0, gzip: 0 });
  return { files: rows, total };
}

/** Events per second on /v1/events, counted by a plain client for `ms`. */
async function eventRate(url, token, ms) {
  const controller = new AbortController();
  const response = await fetch(`${url}/v1/events`, {
    headers: { authorization: `Bearer ${token}` },
    signal: controller.signal,
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const counts = {};
  const timer = setTimeout(() => controller.abort(), ms);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const match of value.matchAll(/^event: (.+)$/gm)) counts[match[1]] = (counts[match[1]] ?? 0) + 1;
    }
  } catch {
    // aborted: the window is over
  }
  clearTimeout(timer);
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return { perSecond: r1(total / (ms / 1000)), byEvent: counts };
}

const chromiumPath = findChromium();
if (chromiumPath === undefined) {
  console.error('chromium is not installed (apt-get install -y chromium); the dashboard bench needs it.');
  process.exit(1);
}

await ensureBuilt();
const bundle = bundleSize();
const server = await startDashboardServer({ extraKeys: KEYS - 4, rate: RATE, healthIntervalMs: 2000 });
const browser = await launchChromium(chromiumPath);
const token = server.tokens.admin;

async function signedInPage() {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  await context.addInitScript((t) => {
    sessionStorage.setItem('keypool.dashboard.token', t);
  }, token);
  return { context, page: await context.newPage() };
}

try {
  // Let usage and health fill up a little.
  await new Promise((r) => setTimeout(r, 1500));
  const health = await (
    await fetch(`${server.url}/v1/health`, { headers: { authorization: `Bearer ${token}` } })
  ).json();
  const healthBytes = JSON.stringify(health).length;

  // First load, cold context each time: navigation to a keys table showing all 500 rows.
  const loads = [];
  for (let i = 0; i < LOADS; i++) {
    const { context, page } = await signedInPage();
    await page.goto(`${server.url}/#/keys`);
    // A screenful: the rows a 900 px high window shows.
    await page.waitForFunction((n) => document.querySelectorAll('tbody tr').length >= n, SCREENFUL, {
      polling: 'raf',
      timeout: 15_000,
    });
    const firstScreenMs = await page.evaluate(() => performance.now());
    await page.waitForFunction((n) => document.querySelectorAll('tbody tr').length >= n, KEYS, {
      polling: 'raf',
      timeout: 15_000,
    });
    const timing = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      return {
        allRowsMs: performance.now(),
        domContentLoadedMs: nav.domContentLoadedEventEnd,
        loadMs: nav.loadEventEnd,
        transferBytes: performance
          .getEntriesByType('resource')
          .reduce((t, r) => t + (r.transferSize ?? 0), nav.transferSize ?? 0),
      };
    });
    loads.push({ ...timing, firstScreenMs });
    await context.close();
  }
  const overviewLoads = [];
  for (let i = 0; i < 3; i++) {
    const { context, page } = await signedInPage();
    await page.goto(`${server.url}/#/`);
    await page.getByRole('heading', { name: /Pool is/ }).waitFor();
    overviewLoads.push(await page.evaluate(() => performance.now()));
    await context.close();
  }

  // Responsiveness: the keys table with 500 rows open while traffic streams events.
  const { context, page } = await signedInPage();
  await context.addInitScript(() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push(e.duration);
    }).observe({ type: 'longtask', buffered: true });
  });
  await page.goto(`${server.url}/#/keys`);
  await page.waitForFunction((n) => document.querySelectorAll('tbody tr').length >= n, KEYS, {
    polling: 'raf',
  });
  await page.getByTestId('connection').getByText('Live').waitFor({ timeout: 10_000 });
  const [events, frames] = await Promise.all([
    eventRate(server.url, token, WATCH_MS),
    page.evaluate(async (ms) => {
      window.__longTasks = [];
      const deltas = [];
      let last = performance.now();
      const end = last + ms;
      await new Promise((resolve) => {
        const step = (t) => {
          deltas.push(t - last);
          last = t;
          if (t < end) requestAnimationFrame(step);
          else resolve();
        };
        requestAnimationFrame(step);
      });
      return { deltas, longTasks: window.__longTasks };
    }, WATCH_MS),
  ]);
  // Input latency: a search keystroke until the filtered table is on screen.
  const searches = [];
  for (const term of ['bulk-01', 'bulk-2', 'openai', 'bulk-49', '']) {
    searches.push(
      await page.evaluate(async (value) => {
        const input = document.querySelector('input[type="search"]');
        const before = document.querySelectorAll('tbody tr').length;
        const started = performance.now();
        const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
        setter.call(input, value);
        input.dispatchEvent(new Event('input', { bubbles: true }));
        for (;;) {
          await new Promise((r) => requestAnimationFrame(r));
          const now = document.querySelectorAll('tbody tr').length;
          if (now !== before || performance.now() - started > 2000) break;
        }
        await new Promise((r) => requestAnimationFrame(r));
        return performance.now() - started;
      }, term),
    );
  }
  await context.close();

  const result = {
    date: new Date().toISOString(),
    node: process.version,
    chromium: browser.version(),
    loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
    keys: KEYS,
    healthEventBytes: healthBytes,
    bundle,
    firstLoad: {
      runs: LOADS,
      keysTableFirstScreenMs: {
        median: r1(median(loads.map((l) => l.firstScreenMs))),
        max: r1(Math.max(...loads.map((l) => l.firstScreenMs))),
      },
      keysTableAllRowsMs: {
        median: r1(median(loads.map((l) => l.allRowsMs))),
        max: r1(Math.max(...loads.map((l) => l.allRowsMs))),
      },
      domContentLoadedMs: { median: r1(median(loads.map((l) => l.domContentLoadedMs))) },
      loadEventMs: { median: r1(median(loads.map((l) => l.loadMs))) },
      overviewMs: { median: r1(median(overviewLoads)) },
      transferBytes: loads[0]?.transferBytes,
    },
    responsiveness: {
      watchMs: WATCH_MS,
      eventsPerSecond: events.perSecond,
      eventsByName: events.byEvent,
      frames: frames.deltas.length,
      frameMs: {
        p50: r1(pct(frames.deltas, 50)),
        p95: r1(pct(frames.deltas, 95)),
        p99: r1(pct(frames.deltas, 99)),
        max: r1(Math.max(...frames.deltas)),
      },
      longTasks: {
        count: frames.longTasks.length,
        totalMs: r1(frames.longTasks.reduce((a, b) => a + b, 0)),
        maxMs: r1(Math.max(0, ...frames.longTasks)),
      },
      searchKeystrokeToPaintMs: { median: r1(median(searches)), max: r1(Math.max(...searches)) },
    },
  };
  const loadMet =
    result.firstLoad.keysTableFirstScreenMs.median < 1000 && result.firstLoad.overviewMs.median < 1000;
  const responsiveMet =
    result.responsiveness.frameMs.p95 <= 50 && result.responsiveness.longTasks.maxMs < 200;
  result.targets = {
    firstLoad: {
      rule: 'median navigation → first screenful of the 500-key table, and → overview with pool status, each < 1000 ms',
      met: loadMet,
    },
    responsive: {
      rule: 'frame p95 <= 50 ms and no long task >= 200 ms while ~20 events/s stream',
      met: responsiveMet,
    },
  };
  writeFileSync(`${out}dashboard.json`, `${JSON.stringify(result, null, 2)}\n`);

  const kb = (b) => `${(b / 1024).toFixed(1)} KiB`;
  const md = `# dashboard bench

Debian chromium ${result.chromium} (headless, playwright-core) against the admin API on 127.0.0.1 with ${KEYS} keys (memory store) and synthetic traffic through the mock upstream, Node ${process.version}, ${result.date}. Browser, server and traffic share this machine's 2 cores (load average ${result.loadavg.join(' / ')}).

## Bundle (apps/dashboard/dist)

| file | raw | gzip |
|---|---|---|
${bundle.files.map((f) => `| ${f.file} | ${kb(f.raw)} | ${kb(f.gzip)} |`).join('\n')}
| **total** | **${kb(bundle.total.raw)}** | **${kb(bundle.total.gzip)}** |

## First load, ${KEYS} keys (${LOADS} cold loads, token already in session storage)

| measure | median |
|---|---|
| navigation → keys table, first screenful (${SCREENFUL} rows) painted | ${result.firstLoad.keysTableFirstScreenMs.median} ms (max ${result.firstLoad.keysTableFirstScreenMs.max} ms) |
| navigation → all ${KEYS} rows in the table (a chunk per frame after the first screen) | ${result.firstLoad.keysTableAllRowsMs.median} ms (max ${result.firstLoad.keysTableAllRowsMs.max} ms) |
| DOMContentLoaded | ${result.firstLoad.domContentLoadedMs.median} ms |
| load event | ${result.firstLoad.loadEventMs.median} ms |
| navigation → overview with pool status | ${result.firstLoad.overviewMs.median} ms |

One /v1/health answer with ${KEYS} keys is ${kb(healthBytes)} of JSON (sent again on the event stream every 2 s).

Target: first load under 1 s (${result.targets.firstLoad.rule}) — ${loadMet ? 'met' : 'NOT met'}.

## Responsiveness: keys table with ${KEYS} rows, live stream at ${result.responsiveness.eventsPerSecond} events/s for ${WATCH_MS / 1000} s

| measure | value |
|---|---|
| frame interval p50 / p95 / p99 / max | ${result.responsiveness.frameMs.p50} / ${result.responsiveness.frameMs.p95} / ${result.responsiveness.frameMs.p99} / ${result.responsiveness.frameMs.max} ms |
| long tasks (≥ 50 ms) | ${result.responsiveness.longTasks.count}, ${result.responsiveness.longTasks.totalMs} ms in all, longest ${result.responsiveness.longTasks.maxMs} ms |
| search keystroke → filtered table painted | median ${result.responsiveness.searchKeystrokeToPaintMs.median} ms, max ${result.responsiveness.searchKeystrokeToPaintMs.max} ms |

Events by name: ${Object.entries(result.responsiveness.eventsByName)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}.

Target: ${result.targets.responsive.rule} — ${responsiveMet ? 'met' : 'NOT met'}.
`;
  writeFileSync(`${out}dashboard.md`, md);
  console.log(md);
} finally {
  await browser.close();
  await server.close();
}
