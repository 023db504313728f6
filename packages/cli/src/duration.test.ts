import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDuration, MAX_DURATION_MS, parseDuration } from './duration.js';

describe('parseDuration', () => {
  it('reads ms and the units people write', () => {
    expect(parseDuration('250')).toBe(250);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration(' 5m ')).toBe(300_000);
  });

  it('refuses what is not a positive duration a timer can wait, saying how to write one', () => {
    for (const bad of ['', 'soon', '5x', '30d', '-5s', '5 m', '1e3', '0x10', 'Infinity', '5m30s']) {
      expect(() => parseDuration(bad), bad).toThrow(/e\.g\. 30s, 5m, 1h, or 500 \(ms\)/);
    }
    expect(() => parseDuration('0')).toThrow(/longer than 0/);
    expect(() => parseDuration('0.4')).toThrow(/longer than 0/);
    expect(() => parseDuration('597h')).toThrow(/at most 2147483647 ms/);
    expect(parseDuration(String(MAX_DURATION_MS))).toBe(MAX_DURATION_MS);
  });

  it('reads back what formatDuration writes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_DURATION_MS }), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms);
      }),
    );
    expect(formatDuration(300_000)).toBe('5m');
    expect(formatDuration(1500)).toBe('1500ms');
  });

  it('returns a positive whole number of ms or throws, whatever the text', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        let ms: number;
        try {
          ms = parseDuration(text);
        } catch (error) {
          expect((error as Error).name).toBe('InvalidArgumentError');
          return;
        }
        expect(Number.isInteger(ms) && ms > 0 && ms <= MAX_DURATION_MS).toBe(true);
      }),
    );
  });
});
