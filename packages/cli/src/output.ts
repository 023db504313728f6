/** Prints for people (aligned columns) or for scripts (`--json`), one place for both. */
export function printTable(rows: Array<Record<string, unknown>>, columns: string[]): void {
  if (rows.length === 0) {
    console.log('(none)');
    return;
  }
  const cell = (value: unknown) => (value === undefined || value === null ? '' : String(value));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  console.log(line(columns));
  for (const row of rows) console.log(line(columns.map((c) => cell(row[c]))));
}

export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** An error for the user: message plus what to do; the stack only with DEBUG. */
export function printError(error: unknown, json: boolean): void {
  const code = (error as { code?: string })?.code ?? 'KEYPOOL_ERROR';
  const message = error instanceof Error ? error.message : String(error);
  if (json) console.error(JSON.stringify({ error: { code, message } }));
  else console.error(`keypool: ${message}${code !== 'KEYPOOL_ERROR' ? ` [${code}]` : ''}`);
  if (process.env.DEBUG && error instanceof Error) console.error(error.stack);
}
