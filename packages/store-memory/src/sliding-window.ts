/**
 * The rpm/tpm window of one key: entries `{ reservedAt, tokens }` in a ring
 * buffer of two typed arrays with a running token sum, so reserve and settle
 * allocate nothing (the buffer doubles only when a window outgrows it).
 *
 * Entries are addressed by a sequence number that keeps counting as the front
 * is trimmed, so a lease can find its entry again at settle time.
 */
export class SlidingWindow {
  private times: Float64Array;
  private tokens: Float64Array;
  private mask: number;
  private head = 0;
  private headSeq = 0;
  /** Entries currently held. */
  size = 0;
  /** Sum of `tokens` over the held entries. */
  tokenSum = 0;

  constructor(initialCapacity = 8) {
    let capacity = 1;
    while (capacity < initialCapacity) capacity *= 2;
    this.times = new Float64Array(capacity);
    this.tokens = new Float64Array(capacity);
    this.mask = capacity - 1;
  }

  /** Drops entries that left the window (`reservedAt <= now - windowMs`) from the front. */
  trim(now: number, windowMs: number): void {
    const edge = now - windowMs;
    while (this.size > 0 && this.times[this.head]! <= edge) {
      this.tokenSum -= this.tokens[this.head]!;
      this.head = (this.head + 1) & this.mask;
      this.headSeq += 1;
      this.size -= 1;
    }
    // Repeated float additions and subtractions drift; an empty window is exactly zero.
    if (this.size === 0) this.tokenSum = 0;
  }

  /** reservedAt of the oldest held entry. */
  oldest(): number | undefined {
    return this.size > 0 ? this.times[this.head] : undefined;
  }

  /** Appends an entry and returns its sequence number. */
  push(reservedAt: number, tokens: number): number {
    if (this.size === this.times.length) this.grow();
    const index = (this.head + this.size) & this.mask;
    this.times[index] = reservedAt;
    this.tokens[index] = tokens;
    this.size += 1;
    this.tokenSum += tokens;
    return this.headSeq + this.size - 1;
  }

  /** Sets the tokens of entry `seq`, if it is still held. */
  setTokens(seq: number, tokens: number): void {
    const offset = seq - this.headSeq;
    if (offset < 0 || offset >= this.size) return;
    const index = (this.head + offset) & this.mask;
    this.tokenSum += tokens - this.tokens[index]!;
    this.tokens[index] = tokens;
  }

  /** Requests and tokens with `reservedAt > now - windowMs`, without dropping anything. */
  count(now: number, windowMs: number): { requests: number; tokens: number } {
    const edge = now - windowMs;
    let skipped = 0;
    let skippedTokens = 0;
    while (skipped < this.size) {
      const index = (this.head + skipped) & this.mask;
      if (this.times[index]! > edge) break;
      skippedTokens += this.tokens[index]!;
      skipped += 1;
    }
    const requests = this.size - skipped;
    return { requests, tokens: requests === 0 ? 0 : this.tokenSum - skippedTokens };
  }

  clear(): void {
    this.headSeq += this.size;
    this.head = 0;
    this.size = 0;
    this.tokenSum = 0;
  }

  /** Slots allocated, for `debugSizes()`. */
  get capacity(): number {
    return this.times.length;
  }

  private grow(): void {
    const capacity = this.times.length * 2;
    const times = new Float64Array(capacity);
    const tokens = new Float64Array(capacity);
    for (let i = 0; i < this.size; i++) {
      const index = (this.head + i) & this.mask;
      times[i] = this.times[index]!;
      tokens[i] = this.tokens[index]!;
    }
    this.times = times;
    this.tokens = tokens;
    this.mask = capacity - 1;
    this.head = 0;
  }
}
