/**
 * Debian's chromium through playwright-core — never a downloaded browser. Absent chromium skips
 * the browser tests loudly, and fails them under KEYPOOL_REQUIRE_SERVICES=1 (CI installs it).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

export const resultsDir = new URL('../test-results/', import.meta.url).pathname;

export function findChromium(): string | undefined {
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      const path = execFileSync('which', [name], { encoding: 'utf8' }).trim();
      if (path !== '') return path;
    } catch {
      // not on PATH
    }
  }
  return undefined;
}

/** The path, or undefined after a loud warning (throws instead when services are required). */
export function chromiumOrSkip(): string | undefined {
  const path = findChromium();
  if (path !== undefined) return path;
  const message =
    "chromium is not installed: the dashboard browser tests are SKIPPED. Install Debian's package (`apt-get install -y chromium`) or set KEYPOOL_REQUIRE_SERVICES=1 to fail instead.";
  if (process.env.KEYPOOL_REQUIRE_SERVICES === '1')
    throw new Error(`chromium is required (KEYPOOL_REQUIRE_SERVICES=1). ${message}`);
  console.warn(`\n!!! ${message}\n`);
  return undefined;
}

/** Playwright starts every launch on a fresh temporary profile (its own --user-data-dir) and removes it on close. */
export async function launchChromium(executablePath: string): Promise<Browser> {
  mkdirSync(resultsDir, { recursive: true });
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}
