// The dashboard in Debian's chromium against a running admin API with live traffic and faults.
import { readFileSync } from 'node:fs';
import AxeBuilder from '@axe-core/playwright';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumOrSkip, launchChromium, resultsDir } from './browser.js';
import { type DashboardServer, ensureBuilt, startDashboardServer } from './test-server.js';

const chromiumPath = chromiumOrSkip();

async function shot(page: Page, name: string) {
  await page.screenshot({ path: `${resultsDir}${name}.png`, fullPage: true });
}

/** No serious or critical accessibility violation on what the page shows now. */
async function expectAccessible(page: Page) {
  const result = await new AxeBuilder({ page }).analyze();
  const serious = result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join('; ')})`);
  expect(serious).toEqual([]);
}

async function signIn(page: Page, url: string, token: string) {
  await page.goto(url);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
}

const row = (page: Page, alias: string) => page.locator(`tr[data-key="${alias}"]`);

describe.skipIf(chromiumPath === undefined)('dashboard in chromium', () => {
  let server: DashboardServer;
  let browser: Browser;
  let admin: BrowserContext;
  let page: Page;
  const requestedUrls: string[] = [];

  beforeAll(async () => {
    await ensureBuilt();
    server = await startDashboardServer({ rate: 12, healthIntervalMs: 1000 });
    browser = await launchChromium(chromiumPath!);
    admin = await browser.newContext({ viewport: { width: 1366, height: 900 }, acceptDownloads: true });
    page = await admin.newPage();
    page.on('request', (request) => requestedUrls.push(request.url()));
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('rejects a wrong token and says what to do', async () => {
    await page.goto(server.url);
    await expectAccessible(page);
    await page.getByLabel('API token').fill('kp_not-a-real-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.locator('#token-error').textContent()).toContain('not accepted');
    await shot(page, '01-sign-in-rejected');
    expect(await page.getByRole('heading', { name: 'Overview' }).count()).toBe(0);
  });

  it('signs in and shows the overview: status, traffic, spend', async () => {
    await signIn(page, server.url, server.tokens.admin);
    await expect.poll(() => page.getByTestId('connection').textContent()).toContain('Live');
    await page.getByRole('heading', { name: /Pool is/ }).waitFor();
    // Traffic measured from live events shows up within a couple of seconds.
    await expect
      .poll(() => page.getByTestId('rps').textContent(), { timeout: 10_000 })
      .toMatch(/^[1-9][\d.]*\/s$/);
    await expect(page.getByRole('link', { name: 'Admin' }).count()).resolves.toBe(1);
    await shot(page, '02-overview');
    await expectAccessible(page);
  });

  it('shows keys change status as the upstream injects faults', async () => {
    await page.getByRole('link', { name: 'Keys', exact: true }).click();
    await row(page, 'openai-a').waitFor();
    expect(await page.locator('tbody tr').count()).toBe(4);
    server.mock.setScript('openai-b', [{ status: 429, retryAfterS: 40 }]);
    server.mock.setScript('openai-c', { steps: [401], repeat: true });
    await page.locator('tr[data-key="openai-b"][data-status="cooling"]').waitFor({ timeout: 15_000 });
    await page.locator('tr[data-key="openai-c"][data-status="invalid"]').waitFor({ timeout: 15_000 });
    // A cooling key counts down to its return.
    expect(await row(page, 'openai-b').locator('.countdown').textContent()).toMatch(/^\d+s$/);
    // Worst first: the invalid key leads the table.
    expect(await page.locator('tbody tr').first().getAttribute('data-key')).toBe('openai-c');
    // Search and filter.
    await page.getByRole('searchbox').fill('anthropic');
    await expect.poll(() => page.locator('tbody tr').count()).toBe(1);
    await page.getByRole('searchbox').fill('');
    await page.getByLabel('Status').selectOption('attention');
    await expect.poll(() => page.locator('tbody tr').count()).toBe(2);
    await page.getByLabel('Status').selectOption('all');
    // Sort by alias.
    await page.getByRole('button', { name: 'Key' }).click();
    await expect.poll(() => page.locator('tbody tr').first().getAttribute('data-key')).toBe('anthropic-a');
    // Secrets only masked.
    const text = (await page.locator('table').textContent()) ?? '';
    for (const secret of ['sk-demo-aaaaaaaaaaaaaaaaaaaaaaaa0001', 'aaaaaaaaaaaaaaaaaaaa'])
      expect(text).not.toContain(secret);
    await shot(page, '03-keys');
    await expectAccessible(page);
    // Bring both back (the operator test resets one through the page) so traffic has somewhere to go.
    server.mock.setScript('openai-c', []);
    for (const key of server.pool.keys().filter((k) => k.alias === 'openai-b' || k.alias === 'openai-c')) {
      await server.pool.enableKey(key.id);
      await server.pool.resetKey(key.id);
    }
    await page.locator('tr[data-key="openai-c"][data-status="active"]').waitFor({ timeout: 10_000 });
  });

  it('disables a key with a reason, and traffic leaves it', async () => {
    await row(page, 'openai-a').getByRole('link', { name: 'openai-a' }).click();
    await page.getByRole('heading', { name: /openai-a/, level: 1 }).waitFor();
    await expect
      .poll(() => page.getByTestId('key-requests').textContent(), { timeout: 10_000 })
      .not.toBe('0');
    await page.getByRole('button', { name: 'Disable' }).click();
    const dialog = page.getByRole('dialog', { name: 'Disable openai-a?' });
    await dialog.waitFor();
    await expectAccessible(page);
    await shot(page, '04-disable-dialog');
    await dialog.getByLabel(/Reason/).fill('rotating the upstream key');
    await dialog.getByRole('button', { name: 'Disable key' }).click();
    await expect.poll(() => page.getByTestId('toast').first().textContent()).toContain('openai-a disabled');
    await expect
      .poll(() => page.getByTestId('key-reason').textContent())
      .toContain('rotating the upstream key');

    // In-flight requests finish; after that the key gets nothing while the pool keeps serving.
    await new Promise((r) => setTimeout(r, 700));
    const before = server.mock.counts.requests('openai-a');
    const othersBefore = server.mock.counts.requests('openai-b') + server.mock.counts.requests('openai-c');
    await new Promise((r) => setTimeout(r, 2500));
    expect(
      server.mock.counts.requests('openai-b') + server.mock.counts.requests('openai-c') - othersBefore,
    ).toBeGreaterThan(10);
    expect(server.mock.counts.requests('openai-a')).toBe(before);

    // The action is in the key's audit trail, with who did it and why.
    await expect.poll(() => page.getByTestId('audit-table').textContent()).toContain('key.disable');
    expect(await page.getByTestId('audit-table').textContent()).toContain('rotating the upstream key');
    expect(await page.getByTestId('audit-table').textContent()).toContain('e2e-admin');
    await shot(page, '05-key-detail-disabled');
    await expectAccessible(page);

    await page.getByRole('button', { name: 'Enable' }).click();
    await page
      .getByRole('dialog', { name: 'Enable openai-a?' })
      .getByRole('button', { name: 'Enable key' })
      .click();
    await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toContain('active');
  });

  it('exports usage by model as CSV', async () => {
    await page.getByRole('link', { name: 'Usage' }).click();
    await page.getByTestId('group-by').selectOption('model');
    await expect.poll(() => page.getByTestId('usage-table').textContent()).toContain('gpt-4o-mini');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export CSV' }).click(),
    ]);
    const csv = readFileSync((await download.path())!, 'utf8');
    expect(csv.split('\r\n')[0]).toBe('model,requests,errors,input_tokens,output_tokens,cost_usd');
    expect(csv).toContain('gpt-4o-mini,');
    await shot(page, '06-usage');
    await expectAccessible(page);
  });

  it('adds a key, imports an env file and creates a token, each in the audit log', async () => {
    await page.getByRole('link', { name: 'Admin' }).click();
    await page.getByLabel(/^Alias/).fill('added-from-ui');
    await page.getByLabel(/^Secret/).fill('sk-demo-from-the-dashboard-000000009999');
    await page.getByRole('button', { name: 'Add key' }).click();
    await page
      .getByRole('dialog', { name: 'Add this key?' })
      .getByRole('button', { name: 'Add key' })
      .click();
    await expect
      .poll(() => page.getByTestId('toast').allTextContents())
      .toContainEqual(expect.stringContaining('added-from-ui added'));
    expect(await page.getByLabel(/^Secret/).inputValue()).toBe('');

    await page
      .getByLabel(/Or paste lines/)
      .fill('OPENAI_API_KEYS=sk-demo-imported-00000000000000000001,sk-demo-imported-00000000000000000002');
    await page.getByRole('button', { name: 'Import keys' }).click();
    await page
      .getByRole('dialog', { name: 'Import these keys?' })
      .getByRole('button', { name: 'Import' })
      .click();
    await expect.poll(() => page.getByTestId('import-report').textContent()).toContain('2 added');

    await page.getByLabel('Name').fill('ops-viewer');
    await page.getByLabel('Role').selectOption('viewer');
    await page.getByRole('button', { name: 'Create token' }).click();
    await page
      .getByRole('dialog', { name: 'Create this token?' })
      .getByRole('button', { name: 'Create token' })
      .click();
    const created = page.getByRole('dialog', { name: 'Copy the new token now' });
    await created.waitFor();
    expect(await created.getByTestId('new-token').textContent()).toMatch(/^kp_/);
    await shot(page, '07-admin-token-created');
    await created.getByRole('button', { name: 'Done' }).click();
    await expectAccessible(page);

    await page.getByRole('link', { name: 'Audit' }).click();
    for (const action of ['key.create', 'key.import', 'token.create', 'key.disable', 'key.enable']) {
      await expect.poll(() => page.getByTestId('audit-table').textContent()).toContain(action);
    }
    // Neither the new secret nor the import's secrets reach the audit log.
    const audit = (await page.getByTestId('audit-table').textContent()) ?? '';
    expect(audit).not.toContain('from-the-dashboard');
    expect(audit).not.toContain('sk-demo-imported');
    await shot(page, '08-audit');
    await expectAccessible(page);
  });

  it('shows stale data while the server is down and reconnects after it restarts', async () => {
    await page.getByRole('link', { name: 'Overview' }).click();
    await expect.poll(() => page.getByTestId('connection').textContent()).toContain('Live');
    const restarted = server.restart(2500);
    await expect
      .poll(() => page.getByTestId('connection').textContent(), { timeout: 8000 })
      .toMatch(/Reconnecting|Stale/);
    await shot(page, '09-reconnecting');
    await restarted;
    await expect
      .poll(() => page.getByTestId('connection').textContent(), { timeout: 20_000 })
      .toContain('Live');
  });

  it('lets a viewer read but not act, and an operator act on keys but not administer', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const viewer = await context.newPage();
    await signIn(viewer, server.url, server.tokens.viewer);
    expect(await viewer.getByTestId('role').textContent()).toBe('viewer');
    expect(await viewer.getByRole('link', { name: 'Admin' }).count()).toBe(0);
    await viewer.getByRole('link', { name: 'Keys', exact: true }).click();
    await row(viewer, 'openai-a').getByRole('link').click();
    await viewer.getByText('it can read, not act on keys').waitFor();
    expect(await viewer.getByRole('button', { name: 'Disable' }).count()).toBe(0);
    await shot(viewer, '10-viewer-key-detail');
    await context.close();

    const opContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const operator = await opContext.newPage();
    await signIn(operator, server.url, server.tokens.operator);
    expect(await operator.getByTestId('role').textContent()).toBe('operator');
    expect(await operator.getByRole('link', { name: 'Admin' }).count()).toBe(0);
    await operator.getByRole('link', { name: 'Keys', exact: true }).click();
    await row(operator, 'openai-b').getByRole('link').click();
    await operator.getByRole('button', { name: 'Reset' }).click();
    await operator
      .getByRole('dialog', { name: 'Reset openai-b?' })
      .getByRole('button', { name: 'Reset key' })
      .click();
    await expect.poll(() => operator.getByTestId('toast').first().textContent()).toContain('openai-b reset');
    await opContext.close();
  });

  it('works at phone width and by keyboard', async () => {
    const context = await browser.newContext({
      viewport: { width: 390, height: 844 },
      isMobile: true,
      hasTouch: true,
    });
    const phone = await context.newPage();
    await signIn(phone, server.url, server.tokens.admin);
    await shot(phone, '11-phone-overview');
    await expectAccessible(phone);
    // No horizontal overflow of the page itself (wide tables scroll inside their region).
    expect(await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1)).toBe(
      true,
    );
    await phone.getByRole('link', { name: 'Keys', exact: true }).click();
    await row(phone, 'openai-a').waitFor();
    await shot(phone, '12-phone-keys');
    expect(await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1)).toBe(
      true,
    );
    await context.close();

    // Keyboard: skip link first, then reach a key and open its disable dialog; Escape cancels.
    const desk = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const kb = await desk.newPage();
    await signIn(kb, server.url, server.tokens.operator);
    await kb.getByRole('link', { name: 'Keys', exact: true }).click();
    // A reload keeps the session (tab storage) and starts focus at the top of the document.
    await kb.reload();
    await row(kb, 'openai-a').waitFor();
    await kb.keyboard.press('Tab');
    expect(await kb.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content');
    await kb.keyboard.press('Enter');
    expect(await kb.evaluate(() => document.activeElement?.id)).toBe('main');
    // Tab order: search, status, provider, then the sortable headers and the rows' links.
    await kb.keyboard.press('Tab');
    await kb.keyboard.type('openai-a');
    await expect.poll(() => kb.locator('tbody tr').count()).toBe(1);
    await row(kb, 'openai-a').getByRole('link').focus();
    await kb.keyboard.press('Enter');
    await kb.getByRole('heading', { name: /openai-a/, level: 1 }).waitFor();
    await kb.getByRole('button', { name: 'Disable' }).focus();
    await kb.keyboard.press('Enter');
    await kb.getByRole('dialog', { name: 'Disable openai-a?' }).waitFor();
    // Focus moved into the dialog (its first field).
    expect(await kb.evaluate(() => document.activeElement?.closest('dialog') !== null)).toBe(true);
    await kb.keyboard.press('Escape');
    await expect.poll(() => kb.getByRole('dialog').count()).toBe(0);
    await desk.close();
  });

  it('shows each organization with its shared headroom, and why its keys cooled together', async () => {
    const others = server.pool.keys().map((k) => k.id);
    // A fallback tier, so the synthetic traffic leaves these two alone.
    const addOrgKey = (n: number, orgLimits?: { rpm: number }) =>
      server.pool.addKey({
        provider: 'openai',
        alias: `org-e2e-${n}`,
        secret: `sk-demo-org-${String(n).repeat(24)}`,
        baseURL: `${server.mock.url}/v1`,
        priority: 9,
        organization: 'org-e2e',
        ...(orgLimits !== undefined && { orgLimits }),
      });
    await addOrgKey(1, { rpm: 4 });
    await addOrgKey(2);
    // One request on the organization: 3 of its 4 a minute left, whichever key served it.
    const lease = await server.pool.acquire({ provider: 'openai', excludeKeyIds: others });

    await page.getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('heading', { name: 'Organizations' }).waitFor({ timeout: 10_000 });
    const org = page.locator('tr[data-org="org:openai:org-e2e"]');
    await expect
      .poll(() => org.getByRole('meter', { name: 'rpm headroom' }).getAttribute('value'), { timeout: 10_000 })
      .toBe('75');
    expect(await org.locator('th, td').allTextContents()).toEqual([
      'org-e2e',
      'openai',
      '2',
      '4 rpm',
      'rpm75%',
    ]);
    await shot(page, '13-organizations');
    await expectAccessible(page);

    // A 429 on one key of the organization holds back the other; the feed says through which.
    await lease.release({ ok: false, status: 429, headers: { 'retry-after': '30' } });
    const other = lease.alias === 'org-e2e-1' ? 'org-e2e-2' : 'org-e2e-1';
    await expect
      .poll(() => page.getByTestId('events').textContent(), { timeout: 10_000 })
      .toMatch(
        new RegExp(`${other} cooling down for \\d+ s: cooled with ${lease.alias} \\(same organization\\)`),
      );

    await page.getByRole('link', { name: 'Keys', exact: true }).click();
    await expect
      .poll(() => row(page, 'org-e2e-2').getByTestId('key-organization').textContent())
      .toBe('org-e2e');
    await expectAccessible(page);
  });

  it('adds a key with an organization and a shared rpm through the form, and shows the organization', async () => {
    await page.getByRole('link', { name: 'Admin' }).click();
    await page.getByLabel(/^Alias/).fill('org-ui-1');
    await page.getByLabel(/^Secret/).fill('sk-demo-org-ui-0000000000000000000001');
    // A fallback tier, so the synthetic traffic leaves it alone.
    await page.getByLabel(/^Tier/).fill('9');
    await page.getByLabel('Org requests / minute').fill('5');

    // Shared limits without an organization: said next to the field, focus on it, nothing sent.
    await page.getByRole('button', { name: 'Add key' }).click();
    const organization = page.getByLabel('Organization', { exact: true });
    await expect
      .poll(() => page.locator('#add-key-organization-error').textContent())
      .toContain('need an organization');
    expect(await organization.getAttribute('aria-invalid')).toBe('true');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('name'))).toBe('organization');
    expect(await page.getByRole('dialog').count()).toBe(0);
    expect(server.pool.keys().some((k) => k.alias === 'org-ui-1')).toBe(false);
    await shot(page, '14-add-key-org-refused');
    await expectAccessible(page);

    await organization.fill('org-ui');
    await expect.poll(() => page.locator('#add-key-organization-error').count()).toBe(0);
    await page.getByRole('button', { name: 'Add key' }).click();
    const dialog = page.getByRole('dialog', { name: 'Add this key?' });
    await expect.poll(() => dialog.textContent()).toContain('of organization org-ui');
    await dialog.getByRole('button', { name: 'Add key' }).click();
    await expect
      .poll(() => page.getByTestId('toast').allTextContents())
      .toContainEqual(expect.stringContaining('org-ui-1 added'));
    const added = server.pool.keys().find((k) => k.alias === 'org-ui-1');
    expect(added?.organization).toBe('org-ui');
    expect(added?.orgLimits).toEqual({ rpm: 5 });

    // One request on it: 4 of the organization's 5 a minute left, so the section shows that limit.
    const lease = await server.pool.acquire({
      provider: 'openai',
      excludeKeyIds: server.pool.keys().flatMap((k) => (k.id === added?.id ? [] : [k.id])),
    });
    await lease.release({ ok: true });
    await page.getByRole('link', { name: 'Overview' }).click();
    const org = page.locator('tr[data-org="org:openai:org-ui"]');
    await expect
      .poll(() => org.getByRole('meter', { name: 'rpm headroom' }).getAttribute('value'), { timeout: 10_000 })
      .toBe('80');
    expect(await org.locator('th, td').allTextContents()).toEqual([
      'org-ui',
      'openai',
      '1',
      '5 rpm',
      'rpm80%',
    ]);
    await shot(page, '15-organization-from-form');
    await expectAccessible(page);
  });

  it('never puts the token in a URL', () => {
    for (const token of Object.values(server.tokens)) {
      expect(requestedUrls.filter((u) => u.includes(token))).toEqual([]);
    }
    expect(requestedUrls.length).toBeGreaterThan(5);
  });
});
