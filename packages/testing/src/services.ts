/**
 * Real services for tests. A missing service skips its tests with a loud
 * message locally and fails the run under KEYPOOL_REQUIRE_SERVICES=1 (CI).
 */
export const servicesRequired = process.env.KEYPOOL_REQUIRE_SERVICES === '1';

export const serviceUrls = {
  redis: process.env.KEYPOOL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  postgres: process.env.KEYPOOL_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  mysql: process.env.KEYPOOL_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test',
} as const;

/**
 * Runs `check`; true when the service answered. Otherwise warns (or throws when
 * services are required) so a skipped suite is never silent.
 */
export async function isServiceAvailable(name: string, check: () => Promise<unknown>): Promise<boolean> {
  try {
    await check();
    return true;
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    if (servicesRequired) {
      throw new Error(`${name} is required (KEYPOOL_REQUIRE_SERVICES=1) but unreachable: ${why}`);
    }
    console.warn(
      `\n!!! ${name} unreachable (${why}): its tests are SKIPPED. Start it (see README) or set KEYPOOL_REQUIRE_SERVICES=1 to fail instead.\n`,
    );
    return false;
  }
}

/** A name unique to this run, for prefixes, schemas and databases that must not collide. */
export function uniqueName(base: string): string {
  return `${base}_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 7)}`;
}
