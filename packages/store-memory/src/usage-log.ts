import type { UsageGroupBy, UsageQuery, UsageRecord, UsageRow } from '@keypool/spec';

/**
 * The usage log of the memory store, kept as columns in a fixed-size ring:
 * numbers in typed arrays, strings as indexes into an intern table. Only the
 * fields `queryUsage` can filter or group on are kept, so appending (once per
 * release) allocates nothing and a full log costs the GC nothing to walk.
 */
export class UsageLog {
  private time: Float64Array;
  private inputTokens: Float64Array;
  private outputTokens: Float64Array;
  private costUsd: Float64Array;
  private isError: Uint8Array;
  /** Interned strings; index 0 stands for "absent". */
  private text: Record<Column, Uint32Array>;
  /** Slots allocated; grows by doubling up to `capacity`, so a small log stays small. */
  private allocated: number;
  private readonly strings: (string | null)[] = [null];
  private readonly stringIds = new Map<string, number>();
  private next = 0;
  /** Records held (at most `capacity`). */
  size = 0;

  constructor(readonly capacity: number) {
    this.allocated = Math.min(capacity, 1024);
    this.time = new Float64Array(this.allocated);
    this.inputTokens = new Float64Array(this.allocated);
    this.outputTokens = new Float64Array(this.allocated);
    this.costUsd = new Float64Array(this.allocated);
    this.isError = new Uint8Array(this.allocated);
    this.text = {
      keyId: new Uint32Array(this.allocated),
      model: new Uint32Array(this.allocated),
      pool: new Uint32Array(this.allocated),
      provider: new Uint32Array(this.allocated),
      day: new Uint32Array(this.allocated),
      month: new Uint32Array(this.allocated),
    };
  }

  /** Doubles the columns; only called before the ring first wraps, so order is kept. */
  private grow(): void {
    const size = Math.min(this.capacity, this.allocated * 2);
    const widen = <T extends Float64Array | Uint32Array | Uint8Array>(old: T, make: (n: number) => T): T => {
      const wider = make(size);
      wider.set(old);
      return wider;
    };
    this.time = widen(this.time, (n) => new Float64Array(n));
    this.inputTokens = widen(this.inputTokens, (n) => new Float64Array(n));
    this.outputTokens = widen(this.outputTokens, (n) => new Float64Array(n));
    this.costUsd = widen(this.costUsd, (n) => new Float64Array(n));
    this.isError = widen(this.isError, (n) => new Uint8Array(n));
    for (const column of Object.keys(this.text) as Column[]) {
      this.text[column] = widen(this.text[column], (n) => new Uint32Array(n));
    }
    this.allocated = size;
  }

  /** Appends a record, overwriting the oldest when full. */
  append(record: UsageRecord): void {
    if (this.capacity === 0) return;
    if (this.next === this.allocated && this.allocated < this.capacity) this.grow();
    const i = this.next;
    this.time[i] = record.time;
    this.inputTokens[i] = record.inputTokens;
    this.outputTokens[i] = record.outputTokens;
    this.costUsd[i] = record.costUsd;
    this.isError[i] = record.status === 'error' ? 1 : 0;
    this.text.keyId[i] = this.intern(record.keyId);
    this.text.model[i] = this.intern(record.model);
    this.text.pool[i] = this.intern(record.pool);
    this.text.provider[i] = this.intern(record.provider);
    this.text.day[i] = this.intern(record.day);
    this.text.month[i] = this.intern(record.month);
    // Wrap only once fully grown; before that the next append grows the columns instead.
    this.next = i + 1 === this.capacity ? 0 : i + 1;
    if (this.size < this.capacity) this.size += 1;
  }

  /** Filters and aggregates as `Store.queryUsage` documents. */
  query(query: UsageQuery): UsageRow[] {
    const filters: [Column, number][] = [];
    for (const column of ['keyId', 'model', 'pool', 'provider'] as const) {
      const wanted = query[column];
      if (wanted === undefined) continue;
      const id = this.stringIds.get(wanted);
      // A value never logged matches nothing.
      if (id === undefined) return aggregate([], query.groupBy ?? [], () => null);
      filters.push([column, id]);
    }
    const from = query.from ?? Number.NEGATIVE_INFINITY;
    const to = query.to ?? Number.POSITIVE_INFINITY;
    const matching: number[] = [];
    for (let n = 0; n < this.size; n++) {
      const i = (this.next - this.size + n + this.allocated) % this.allocated;
      const time = this.time[i]!;
      if (time < from || time >= to) continue;
      if (filters.every(([column, id]) => this.text[column][i] === id)) matching.push(i);
    }
    return aggregate(matching, query.groupBy ?? [], (i, by) => this.strings[this.text[columnOf[by]][i]!]!, {
      requests: () => 1,
      errors: (i) => this.isError[i]!,
      inputTokens: (i) => this.inputTokens[i]!,
      outputTokens: (i) => this.outputTokens[i]!,
      costUsd: (i) => this.costUsd[i]!,
    });
  }

  private intern(value: string | undefined): number {
    if (value === undefined) return 0;
    let id = this.stringIds.get(value);
    if (id === undefined) {
      id = this.strings.length;
      this.strings.push(value);
      this.stringIds.set(value, id);
    }
    return id;
  }
}

type Column = 'keyId' | 'model' | 'pool' | 'provider' | 'day' | 'month';
type Measure = 'requests' | 'errors' | 'inputTokens' | 'outputTokens' | 'costUsd';
type GroupValue = string | null;

const columnOf: Record<UsageGroupBy, Column> = {
  key: 'keyId',
  model: 'model',
  pool: 'pool',
  provider: 'provider',
  day: 'day',
  month: 'month',
};

/** null sorts first, then strings by code unit (what `testStore` documents). */
function compareValues(a: GroupValue, b: GroupValue): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  return a < b ? -1 : 1;
}

function emptyRow(): UsageRow {
  return { requests: 0, errors: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 };
}

const measures: Measure[] = ['requests', 'errors', 'inputTokens', 'outputTokens', 'costUsd'];

function aggregate(
  rows: readonly number[],
  groupBy: readonly UsageGroupBy[],
  groupOf: (row: number, by: UsageGroupBy) => GroupValue,
  measure?: Record<Measure, (row: number) => number>,
): UsageRow[] {
  const add = (target: UsageRow, row: number) => {
    for (const name of measures) target[name] += measure![name](row);
  };
  if (groupBy.length === 0) {
    const total = emptyRow();
    for (const row of rows) add(total, row);
    return [total];
  }
  const groups = new Map<string, { values: GroupValue[]; row: UsageRow }>();
  for (const row of rows) {
    const values = groupBy.map((by) => groupOf(row, by));
    // JSON keeps null and '' apart, which a joined string would not.
    const id = JSON.stringify(values);
    let group = groups.get(id);
    if (!group) {
      const fields: Record<string, GroupValue> = {};
      groupBy.forEach((by, i) => {
        fields[columnOf[by]] = values[i]!;
      });
      group = { values, row: { ...fields, ...emptyRow() } as UsageRow };
      groups.set(id, group);
    }
    add(group.row, row);
  }
  return [...groups.values()]
    .sort((a, b) => {
      for (let i = 0; i < a.values.length; i++) {
        const order = compareValues(a.values[i]!, b.values[i]!);
        if (order !== 0) return order;
      }
      return 0;
    })
    .map((group) => group.row);
}
