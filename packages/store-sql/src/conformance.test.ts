import { testStore } from '@keypool/testing';
import { afterAll, describe } from 'vitest';
import { DIALECTS, target } from './test-fixture.js';

// The shared conformance suite on every dialect. `peer` opens a second Kysely
// instance (its own connection pool) on the same tables, so the concurrency
// tests run across connections, as two processes would.
for (const dialect of DIALECTS) {
  const run = target(dialect);
  const isUp = await run.setUp();
  describe.skipIf(!isUp)(`sql:${dialect}`, () => {
    afterAll(() => run.tearDown());
    testStore(`sql:${dialect}`, {
      async create() {
        await run.empty();
        return run.open();
      },
      async peer() {
        return run.open();
      },
    });
  });
}
