import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { generateMasterKey, openSecret, parseMasterKey, sealedKeyId } from '@keypool/core';
import { dashboardDir } from '@keypool/dashboard';
import { sqlStore } from '@keypool/store-sql';
import {
  isRedisServerAvailable,
  isServiceAvailable,
  type MockUpstream,
  startMockUpstream,
  startRedisServer,
} from '@keypool/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = resolve(import.meta.dirname, '../dist/bin.js');
const run = promisify(execFile);
const SECRET = 'sk-cli-test-aaaaaaaaaaaaaaaaaaaa9999';
const SECRET_2 = 'sk-cli-test-bbbbbbbbbbbbbbbbbbbb8888';

let dir: string;

// The dashboard is a build output (`npm run build -w @keypool/dashboard`); without it the test
// that `serve` answers / with it is skipped loudly (and fails under KEYPOOL_REQUIRE_SERVICES=1).
const dashboardBuilt = await isServiceAvailable('The built dashboard', async () => {
  if (!existsSync(join(dashboardDir, 'index.html'))) throw new Error(`no index.html in ${dashboardDir}`);
});

/** The caller's environment without keypool settings, so the defaults are what is tested. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('KEYPOOL_') || name === 'PORT') delete env[name];
  return env;
}
let mock: MockUpstream;
const redisServerRuns = await isRedisServerAvailable();

async function keypool(args: string[], env: Record<string, string> = {}, cwd = dir) {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], {
      cwd,
      env: { ...cleanEnv(), ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** stdout as JSON, or a failure that shows what the command said. */
function json(result: { code: number; stdout: string; stderr: string }) {
  if (result.code !== 0 || result.stdout.trim() === '') {
    throw new Error(`exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
  return JSON.parse(result.stdout);
}

/** Starts `keypool serve` and resolves once it printed its URL (in words, or as JSON with --json). */
function serve(
  args: string[] = [],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<{ child: ChildProcess; out: () => string; url: string }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
    cwd: options.cwd ?? dir,
    env: { ...cleanEnv(), LOG_LEVEL: 'warn', ...options.env },
  });
  let text = '';
  child.stdout.on('data', (chunk) => (text += chunk));
  child.stderr.on('data', (chunk) => (text += chunk));
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`serve did not start:\n${text}`)), 15_000);
    child.once('exit', (code) => fail(new Error(`serve exited (${code}):\n${text}`)));
    child.stdout.on('data', () => {
      const line = /^(\{"url":.*\})\n/m.exec(text)?.[1];
      const url =
        /admin API on (http:\/\/\S+)/.exec(text)?.[1] ??
        (line !== undefined ? (JSON.parse(line) as { url: string }).url : undefined);
      if (url !== undefined && (text.includes('OpenAPI:') || line !== undefined)) {
        clearTimeout(timer);
        setTimeout(() => done({ child, out: () => text, url }), 50);
      }
    });
  });
}

/** What `serve --json` printed when it started. */
function startLine(out: string): Record<string, unknown> {
  const line = /^(\{"url":.*\})$/m.exec(out)?.[1];
  if (line === undefined) throw new Error(`no start line in:\n${out}`);
  return JSON.parse(line);
}

async function stop(child: ChildProcess): Promise<number | null> {
  child.kill('SIGTERM');
  const code = await new Promise<number | null>((resolve) =>
    child.once('exit', (exitCode) => resolve(exitCode)),
  );
  return code;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'keypool-cli-'));
  mock = await startMockUpstream({ keys: { one: SECRET, two: SECRET_2 } });
});
afterAll(async () => {
  await mock?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('keypool (built binary)', () => {
  it('serve: first start makes .keypool with a 0600 master key and prints an admin token once', async () => {
    const first = await serve();
    const token = /(kp_[A-Za-z0-9_-]{43})/.exec(first.out())?.[1];
    expect(token).toBeDefined();
    expect(first.out()).toContain(join(dir, '.keypool', 'keypool.db'));
    expect(statSync(join(dir, '.keypool', 'master.key')).mode & 0o777).toBe(0o600);
    const health = await fetch(`${first.url}/v1/health`, { headers: { authorization: `Bearer ${token}` } });
    expect(health.status).toBe(200);
    expect(await stop(first.child)).toBe(0);

    const second = await serve();
    expect(second.out()).not.toMatch(/kp_[A-Za-z0-9_-]{43}/);
    const again = await fetch(`${second.url}/v1/health`, { headers: { authorization: `Bearer ${token}` } });
    expect(again.status).toBe(200);
    expect(await stop(second.child)).toBe(0);
  }, 40_000);

  it('keys add/list/disable/enable/test, import-env, usage, tokens create, migrate', async () => {
    const added = await keypool(
      [
        'keys',
        'add',
        'openai',
        '--alias',
        'one',
        '--secret-env',
        'THE_KEY',
        '--base-url',
        `${mock.url}/v1`,
        '--json',
      ],
      { THE_KEY: SECRET },
    );
    expect(added.code, added.stderr).toBe(0);
    expect(json(added)).toMatchObject({ alias: 'one', maskedSecret: 'sk-cli-…9999' });

    const env = join(dir, 'keys.env');
    writeFileSync(env, `OPENAI_API_KEYS=${SECRET},${SECRET_2}\nANTHROPIC_API_KEY="bad value"\n`);
    const imported = await keypool(['import-env', env, '--json']);
    expect(imported.code, imported.stderr).toBe(0);
    const report = json(imported);
    expect(report.added).toHaveLength(1);
    expect(report.duplicates).toHaveLength(1);
    expect(report.invalid[0].source).toBe('ANTHROPIC_API_KEY');
    expect(imported.stdout).not.toContain(SECRET);

    const list = await keypool(['keys', 'list', '--json']);
    const keys = json(list).keys as Array<{ alias: string; status: string }>;
    expect(keys.map((k) => k.alias)).toContain('one');
    expect(list.stdout).not.toContain(SECRET);
    const human = await keypool(['keys', 'list']);
    expect(human.stdout).toMatch(/alias\s+provider\s+status/);

    expect((await keypool(['keys', 'disable', 'one', '--reason', 'testing'])).stdout).toContain(
      'disabled one',
    );
    const disabled = json(await keypool(['keys', 'list', '--json'])).keys.find(
      (k: { alias: string }) => k.alias === 'one',
    );
    expect(disabled).toMatchObject({ status: 'disabled', disabledReason: 'testing' });
    expect((await keypool(['keys', 'enable', 'one'])).code).toBe(0);

    // A 401 marked the key invalid; a passing test brings it back (as the API's test does).
    const one = keys.find((k) => k.alias === 'one') as { id: string } | undefined;
    const store = sqlStore({ url: `sqlite:${join(dir, '.keypool', 'keypool.db')}` });
    try {
      await store.updateKeyState(one!.id, { set: { invalidSince: Date.now() }, now: Date.now() });
    } finally {
      await store.close();
    }
    expect(json(await keypool(['keys', 'list', '--json'])).keys).toContainEqual(
      expect.objectContaining({ alias: 'one', status: 'invalid' }),
    );
    const tested = await keypool(['keys', 'test', 'one', '--json']);
    expect(tested.code, tested.stderr).toBe(0);
    expect(json(tested)).toMatchObject({ ok: true, recovered: ['invalid'] });
    expect(json(await keypool(['keys', 'list', '--json'])).keys).toContainEqual(
      expect.objectContaining({ alias: 'one', status: 'active' }),
    );

    const usage = await keypool(['usage', '--json', '--group-by', 'key,day']);
    expect(usage.code, usage.stderr).toBe(0);
    expect(json(usage).rows).toEqual([]);

    const token = await keypool(['tokens', 'create', '--name', 'ci', '--role', 'viewer', '--json']);
    expect(json(token).token).toMatch(/^kp_/);
    expect((await keypool(['migrate'])).stdout).toContain('up to date');
  }, 40_000);

  it('keys add --org with --org-rpm … --org-budget-usd: the limits its organization shares', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'keypool-org-'));
    try {
      const add = (args: string[], secret: string) =>
        keypool(
          ['keys', 'add', 'openai', '--secret-env', 'THE_KEY', '--json', ...args],
          { THE_KEY: secret },
          cwd,
        );
      const first = await add(
        [
          '--alias',
          'org-one',
          '--rpm',
          '60',
          '--org',
          'org-cli',
          '--org-rpm',
          '500',
          '--org-tpm',
          '90000',
          '--org-rpd',
          '10000',
          '--org-tpd',
          '2000000',
          '--org-budget-usd',
          '25.5',
        ],
        SECRET,
      );
      expect(first.code, first.stderr).toBe(0);
      expect(json(first)).toMatchObject({
        alias: 'org-one',
        limits: { rpm: 60 },
        organization: 'org-cli',
        orgLimits: {
          rpm: 500,
          tpm: 90_000,
          requestsPerDay: 10_000,
          tokensPerDay: 2_000_000,
          monthlyBudgetUsd: 25.5,
        },
      });
      expect(first.stdout).not.toContain(SECRET);
      // Another key of the organization needs no limits of its own to share them.
      const second = await add(['--alias', 'org-two', '--org', 'org-cli'], SECRET_2);
      expect(second.code, second.stderr).toBe(0);
      expect(json(second)).toMatchObject({ alias: 'org-two', organization: 'org-cli' });
      expect(json(second)).not.toHaveProperty('orgLimits');

      // Organization limits without the organization: refused before the secret is read, naming the flags.
      const noOrg = await keypool(
        ['keys', 'add', 'openai', '--org-rpm', '5', '--org-budget-usd', '3'],
        {},
        cwd,
      );
      expect(noOrg.code).toBe(1);
      expect(noOrg.stderr).toContain(
        '--org-rpm, --org-budget-usd are limits the keys of one organization share: add --org <organization id>.',
      );
      const notNumber = await add(
        ['--org', 'org-cli', '--org-tpd', 'lots'],
        'sk-cli-test-cccccccccccccccccccc7777',
      );
      expect(notNumber.code).toBe(1);
      expect(JSON.parse(notNumber.stderr).error.message).toBe('--org-tpd must be a number, got "lots".');
      const negative = await add(
        ['--org', 'org-cli', '--org-rpm=-5'],
        'sk-cli-test-cccccccccccccccccccc7777',
      );
      expect(negative.code).toBe(1);
      expect(JSON.parse(negative.stderr).error).toMatchObject({
        code: 'KEYPOOL_INVALID_CONFIG',
        message: expect.stringContaining('orgLimits.rpm must be a positive number'),
      });

      const keys = json(await keypool(['keys', 'list', '--json'], {}, cwd)).keys as Array<{
        alias: string;
        organization?: string;
      }>;
      expect(keys.map((k) => [k.alias, k.organization]).sort()).toEqual([
        ['org-one', 'org-cli'],
        ['org-two', 'org-cli'],
      ]);
      const help = await keypool(['keys', 'add', '--help']);
      for (const flag of ['--org <id>', '--org-rpm <n>', '--org-tpm <n>', '--org-rpd <n>', '--org-tpd <n>']) {
        expect(help.stdout).toContain(flag);
      }
      expect(help.stdout).toContain('--org-budget-usd <n>');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 30_000);

  it('rotate-master-key re-seals every key; the keys still work after', async () => {
    const before = statSync(join(dir, '.keypool', 'master.key')).mtimeMs;
    const rotated = await keypool(['rotate-master-key', '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(json(rotated).resealed).toBeGreaterThanOrEqual(2);
    expect(statSync(join(dir, '.keypool', 'master.key')).mtimeMs).not.toBe(before);
    const tested = await keypool(['keys', 'test', 'one', '--json']);
    expect(json(tested).ok).toBe(true);
    const again = await keypool(['rotate-master-key', '--json']);
    expect(again.code).toBe(0);
  }, 30_000);

  it('rotate-master-key killed midway resumes: every record ends sealed by the one new key', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'keypool-rotate-'));
    const keyFile = join(cwd, '.keypool', 'master.key');
    const secrets = Array.from(
      { length: 150 },
      (_, i) => `sk-rotate-${String(i).padStart(4, '0')}-${'r'.repeat(24)}`,
    );
    try {
      writeFileSync(join(cwd, 'keys.env'), `OPENAI_API_KEYS=${secrets.join(',')}\n`);
      const imported = await keypool(['import-env', 'keys.env', '--json'], {}, cwd);
      expect(json(imported).added).toHaveLength(150);
      const oldKey = readFileSync(keyFile, 'utf8');

      // Killed (no chance to clean up) once it has re-sealed a first record.
      const child = spawn(process.execPath, [BIN, 'rotate-master-key'], { cwd, env: cleanEnv() });
      let said = '';
      child.stdout.on('data', (chunk) => {
        said += chunk;
        if (said.includes('re-sealed')) child.kill('SIGKILL');
      });
      const [, signal] = await once(child, 'exit');
      expect(signal, said).toBe('SIGKILL');
      expect(said).not.toContain('done:');
      expect(readFileSync(keyFile, 'utf8')).toBe(oldKey);
      const newKey = readFileSync(`${keyFile}.next`, 'utf8');

      // Half-rotated, the keys still open (both keys are loaded) and the rotation picks up where it stopped.
      expect(json(await keypool(['keys', 'list', '--json'], {}, cwd)).keys).toHaveLength(150);
      const resumed = await keypool(['rotate-master-key', '--json'], {}, cwd);
      const report = json(resumed);
      expect(report.skipped, 'records re-sealed before the kill').toBeGreaterThanOrEqual(1);
      expect(report.resealed + report.skipped).toBe(150);
      expect(readFileSync(keyFile, 'utf8')).toBe(newKey);
      expect(existsSync(`${keyFile}.next`)).toBe(false);
      expect(readFileSync(report.oldKeyFile, 'utf8')).toBe(oldKey);
      expect(statSync(report.oldKeyFile).mode & 0o777).toBe(0o600);

      // Every record: sealed by the new key alone, and it opens to the secret imported.
      const master = parseMasterKey(newKey);
      const store = sqlStore({ url: `sqlite:${join(cwd, '.keypool', 'keypool.db')}` });
      try {
        const records = await store.listKeys();
        expect(
          records.every((r) => r.masterKeyId === master.id && sealedKeyId(r.sealedSecret) === master.id),
        ).toBe(true);
        expect(records.map((r) => openSecret(r.sealedSecret, [master])).sort()).toEqual([...secrets].sort());
      } finally {
        await store.close();
      }
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 60_000);

  it.skipIf(!redisServerRuns)(
    'refuses a Redis that may evict any key, says how to go on, and goes on when told',
    async () => {
      const redis = await startRedisServer(['--maxmemory-policy', 'allkeys-lru']);
      try {
        const args = ['keys', 'list', '--store', redis.url, '--json'];
        const env = { KEYPOOL_MASTER_KEY: generateMasterKey() };
        const refused = await keypool(args, env);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain('maxmemory-policy allkeys-lru');
        expect(refused.stderr).toContain('KEYPOOL_REDIS_ALLOW_EVICTION=1');
        const accepted = await keypool(args, { ...env, KEYPOOL_REDIS_ALLOW_EVICTION: '1' });
        expect(accepted.code, accepted.stderr).toBe(0);
        expect(json(accepted).keys).toEqual([]);
      } finally {
        await redis.stop();
      }
    },
    30_000,
  );

  it('errors say what is wrong and how to fix it; --help everywhere', async () => {
    const badStore = await keypool(['keys', 'list', '--store', 'ftp://x']);
    expect(badStore.code).toBe(1);
    expect(badStore.stderr).toContain('sqlite:./.keypool/keypool.db');
    const unknown = await keypool(['keys', 'disable', 'nope']);
    expect(unknown.stderr).toContain('keypool keys list');
    const role = await keypool(['tokens', 'create', '--name', 'x', '--role', 'root']);
    expect(role.code).not.toBe(0);
    expect(role.stderr).toContain('admin');
    const noKey = await keypool([
      'keys',
      'list',
      '--data-dir',
      join(dir, 'elsewhere'),
      '--store',
      `sqlite:${join(dir, '.keypool', 'keypool.db')}`,
    ]);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toContain('KEYPOOL_MASTER_KEY');
    for (const args of [
      [],
      ['serve'],
      ['keys'],
      ['keys', 'add'],
      ['usage'],
      ['tokens', 'create'],
      ['demo'],
    ]) {
      const help = await keypool([...args, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain('Usage: keypool');
    }
  }, 30_000);

  it('serve --last-resort --probe-interval: a cooling key still serves, a probe brings a refused key back', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'keypool-serve-'));
    try {
      const added = await keypool(
        [
          'keys',
          'add',
          'openai',
          '--alias',
          'one',
          '--secret-env',
          'THE_KEY',
          '--base-url',
          `${mock.url}/v1`,
        ],
        { THE_KEY: SECRET },
        cwd,
      );
      expect(added.code, added.stderr).toBe(0);
      const tokenOf = async (role: string) =>
        json(await keypool(['tokens', 'create', '--name', role, '--role', role, '--json'], {}, cwd))
          .token as string;
      const service = await tokenOf('service');
      const viewer = await tokenOf('viewer');
      const call = (url: string, token: string, path: string, body?: unknown) =>
        fetch(`${url}${path}`, {
          method: body === undefined ? 'GET' : 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          ...(body !== undefined && { body: JSON.stringify(body) }),
        });

      // Without the flags: a 429 cools the only key for ten minutes, and the next lease is refused.
      const plain = await serve([], { cwd });
      expect(plain.out()).not.toContain('lastResort:');
      expect(plain.out()).not.toContain('probes:');
      const first = await call(plain.url, service, '/v1/leases', { provider: 'openai' });
      expect(first.status).toBe(201);
      const { leaseId } = (await first.json()) as { leaseId: string };
      const cooled = await call(plain.url, service, `/v1/leases/${leaseId}/report`, {
        ok: false,
        status: 429,
        headers: { 'retry-after': '600' },
      });
      expect(cooled.status).toBe(200);
      expect((await call(plain.url, service, '/v1/leases', { provider: 'openai' })).status).toBe(429);
      expect(await stop(plain.child)).toBe(0);

      const flagged = await serve(['--last-resort', '--probe-interval', '200ms'], { cwd });
      expect(flagged.out()).toMatch(/lastResort: on \(/);
      expect(flagged.out()).toMatch(/probes: {5}every 200ms \(/);
      // Still cooling (the store kept it), yet the lease goes through as a last resort.
      const rescued = await call(flagged.url, service, '/v1/leases', { provider: 'openai' });
      expect(rescued.status).toBe(201);
      const lease = (await rescued.json()) as { leaseId: string; keyAlias: string };
      expect(lease.keyAlias).toBe('one');
      // Upstream then refuses the key (401): invalid, until a background probe finds it accepted again.
      const refused = await call(flagged.url, service, `/v1/leases/${lease.leaseId}/report`, {
        ok: false,
        status: 401,
      });
      expect(refused.status).toBe(200);
      let entries: Array<{ actor: string; details: { alias: string; reasons: string[] } }> = [];
      while (entries.length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const audit = await call(flagged.url, viewer, '/v1/audit?action=key.probe');
        entries = ((await audit.json()) as { entries: typeof entries }).entries;
      }
      expect(entries).toEqual([
        expect.objectContaining({
          actor: 'probe',
          details: expect.objectContaining({ alias: 'one', reasons: ['invalid'] }),
        }),
      ]);
      expect(await stop(flagged.child)).toBe(0);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 40_000);

  it('serve reads KEYPOOL_LAST_RESORT and KEYPOOL_PROBE_INTERVAL (0 and empty mean off)', async () => {
    const on = await serve(['--json', '--store', 'memory:'], {
      env: { KEYPOOL_LAST_RESORT: '1', KEYPOOL_PROBE_INTERVAL: '5m' },
    });
    expect(startLine(on.out())).toMatchObject({ lastResort: true, probeIntervalMs: 300_000 });
    expect(await stop(on.child)).toBe(0);

    const off = await serve(['--json', '--store', 'memory:'], {
      env: { KEYPOOL_LAST_RESORT: '0', KEYPOOL_PROBE_INTERVAL: '' },
    });
    const started = startLine(off.out());
    expect(started.lastResort).toBe(false);
    expect(started).not.toHaveProperty('probeIntervalMs');
    expect(await stop(off.child)).toBe(0);

    // The flag wins over its variable.
    const flag = await serve(['--store', 'memory:', '--probe-interval', '1.5s'], {
      env: { KEYPOOL_PROBE_INTERVAL: '5m' },
    });
    expect(flag.out()).toContain('every 1500ms');
    expect(flag.out()).not.toContain('lastResort:');
    expect(await stop(flag.child)).toBe(0);
  }, 40_000);

  it('serve refuses a bad --probe-interval or KEYPOOL_LAST_RESORT, naming it with an example', async () => {
    for (const [value, says] of [
      ['5x', 'e.g. 30s, 5m'],
      ['30d', 'e.g. 30s, 5m'],
      ['-5s', 'e.g. 30s, 5m'],
      ['0', 'longer than 0'],
      ['999h', 'at most 2147483647 ms'],
    ] as const) {
      const bad = await keypool(['serve', '--port', '0', '--store', 'memory:', '--probe-interval', value]);
      expect(bad.code, `${value}: ${bad.stdout}`).toBe(1);
      expect(bad.stderr).toContain(`option '--probe-interval <duration>' argument '${value}' is invalid`);
      expect(bad.stderr).toContain(says);
    }
    const badEnv = await keypool(['serve', '--port', '0', '--store', 'memory:'], {
      KEYPOOL_PROBE_INTERVAL: 'soon',
    });
    expect(badEnv.code).toBe(1);
    expect(badEnv.stderr).toContain("from env 'KEYPOOL_PROBE_INTERVAL' is invalid");
    expect(badEnv.stderr).toContain('e.g. 30s, 5m');
    const badSwitch = await keypool(['serve', '--port', '0', '--store', 'memory:'], {
      KEYPOOL_LAST_RESORT: 'maybe',
    });
    expect(badSwitch.code).toBe(1);
    expect(badSwitch.stderr).toContain('KEYPOOL_LAST_RESORT must be 1 or 0');
    expect(badSwitch.stderr).toContain('KEYPOOL_LAST_RESORT=1');
    expect(badSwitch.stdout).toBe('');

    const help = await keypool(['serve', '--help']);
    for (const words of [
      '--last-resort',
      'KEYPOOL_LAST_RESORT',
      '--probe-interval <duration>',
      'KEYPOOL_PROBE_INTERVAL',
    ]) {
      expect(help.stdout).toContain(words);
    }
  }, 30_000);

  it.skipIf(!dashboardBuilt)(
    'serve: the dashboard at /, the API behind a token',
    async () => {
      const running = await serve();
      expect(running.out()).toContain(`dashboard:  ${running.url}/`);
      const page = await fetch(`${running.url}/`);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toContain('text/html');
      const html = await page.text();
      expect(html).toContain('<div id="root">');
      // A client-side route reloads into the same page; API paths stay API.
      expect(await (await fetch(`${running.url}/keys`)).text()).toBe(html);
      expect((await fetch(`${running.url}/v1/health`)).status).toBe(401);
      expect(await stop(running.child)).toBe(0);
    },
    40_000,
  );

  it('demo: serves with mock upstream keys and synthetic traffic, writing nothing to disk', async () => {
    // A fresh working directory and the default data directory (./.keypool), as a first-time user runs it.
    const cwd = mkdtempSync(join(tmpdir(), 'keypool-demo-'));
    const demo = await keypool(
      ['demo', '--port', '0', '--duration', '2', '--rate', '20', '--last-resort', '--probe-interval', '1s'],
      {},
      cwd,
    );
    const left = readdirSync(cwd, { recursive: true });
    rmSync(cwd, { recursive: true, force: true });
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toMatch(/admin API on http:\/\/127\.0\.0\.1:\d+/);
    if (dashboardBuilt) expect(demo.stdout).toMatch(/dashboard: {2}http:\/\/127\.0\.0\.1:\d+\//);
    const calls = Number(/after (\d+) calls/.exec(demo.stdout)?.[1]);
    expect(calls).toBeGreaterThan(5);
    // The demo's memory store keeps nothing, so its master key lives in memory: no .keypool, no key file.
    expect(demo.stdout).toMatch(/master key: throw-away/);
    expect(demo.stdout).toMatch(/lastResort: on/);
    expect(demo.stdout).toMatch(/probes: {5}every 1 ?s/);
    expect(left).toEqual([]);
  }, 30_000);
});
