/**
 * The rpm/tpm window of one key. Entries in flight have no stamp yet and always
 * count (their request may reach the upstream at any moment); settled or expired
 * entries carry a stamp and leave the window at stamp + windowMs (see "Window
 * entries" in @keypool/spec's README).
 *
 * Stamped entries sit in a ring buffer of two typed arrays ordered by stamp, with
 * a running token sum, so reserve and settle allocate nothing. Stamps arrive
 * almost in order (a settle stamps near its own time), so keeping the order is an
 * insertion from the back that rarely moves anything.
 */
export class SlidingWindow {
  private times: Float64Array;
  private tokens: Float64Array;
  private mask: number;
  private head = 0;
  /** Stamped entries held. */
  private stamped = 0;
  private stampedTokens = 0;
  /** Entries in flight and their (estimated) tokens. */
  private inFlight = 0;
  private inFlightTokens = 0;

  constructor(initialCapacity = 8) {
    let capacity = 1;
    while (capacity < initialCapacity) capacity *= 2;
    this.times = new Float64Array(capacity);
    this.tokens = new Float64Array(capacity);
    this.mask = capacity - 1;
  }

  /** Entries held (in flight or stamped, before any trim). */
  get size(): number {
    return this.inFlight + this.stamped;
  }

  /** Tokens of the entries held. */
  get tokenSum(): number {
    return this.inFlightTokens + this.stampedTokens;
  }

  /** A reservation enters the window, unstamped. */
  open(tokens: number): void {
    this.inFlight += 1;
    this.inFlightTokens += tokens;
  }

  /** An in-flight entry reserved with `estimatedTokens` is stamped with its final tokens. */
  stamp(stamp: number, estimatedTokens: number, tokens: number): void {
    this.inFlight -= 1;
    this.inFlightTokens -= estimatedTokens;
    if (this.inFlight === 0) this.inFlightTokens = 0;
    if (this.stamped === this.times.length) this.grow();
    // Insert from the back, shifting the (few) later stamps one slot to the right.
    let position = this.stamped;
    while (position > 0) {
      const before = (this.head + position - 1) & this.mask;
      if (this.times[before]! <= stamp) break;
      const at = (this.head + position) & this.mask;
      this.times[at] = this.times[before]!;
      this.tokens[at] = this.tokens[before]!;
      position -= 1;
    }
    const index = (this.head + position) & this.mask;
    this.times[index] = stamp;
    this.tokens[index] = tokens;
    this.stamped += 1;
    this.stampedTokens += tokens;
  }

  /** Drops stamped entries that left the window (`stamp <= now - windowMs`). */
  trim(now: number, windowMs: number): void {
    const edge = now - windowMs;
    while (this.stamped > 0 && this.times[this.head]! <= edge) {
      this.stampedTokens -= this.tokens[this.head]!;
      this.head = (this.head + 1) & this.mask;
      this.stamped -= 1;
    }
    // Repeated float additions and subtractions drift; an empty buffer is exactly zero.
    if (this.stamped === 0) this.stampedTokens = 0;
  }

  /** Stamp of the oldest stamped entry held. */
  oldestStamp(): number | undefined {
    return this.stamped > 0 ? this.times[this.head] : undefined;
  }

  /** Requests and tokens that count at `now`, without dropping anything. */
  count(now: number, windowMs: number): { requests: number; tokens: number } {
    const edge = now - windowMs;
    let skipped = 0;
    let skippedTokens = 0;
    while (skipped < this.stamped) {
      const index = (this.head + skipped) & this.mask;
      if (this.times[index]! > edge) break;
      skippedTokens += this.tokens[index]!;
      skipped += 1;
    }
    const stamped = this.stamped - skipped;
    return {
      requests: this.inFlight + stamped,
      tokens: this.inFlightTokens + (stamped === 0 ? 0 : this.stampedTokens - skippedTokens),
    };
  }

  /** Forgets the stamped entries (a counter reset); entries in flight are live requests and stay. */
  clearStamped(): void {
    this.head = 0;
    this.stamped = 0;
    this.stampedTokens = 0;
  }

  /** Slots allocated, for `debugSizes()`. */
  get capacity(): number {
    return this.times.length;
  }

  private grow(): void {
    const capacity = this.times.length * 2;
    const times = new Float64Array(capacity);
    const tokens = new Float64Array(capacity);
    for (let i = 0; i < this.stamped; i++) {
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
