import { describe, expect, it } from 'vitest';
import {
  formatAgo,
  formatCount,
  formatCountdown,
  formatMs,
  formatPercent,
  formatRate,
  formatUsd,
  startOfDay,
  startOfMonth,
} from './format.js';

describe('format', () => {
  it('shortens large counts and keeps small ones exact', () => {
    expect(formatCount(999)).toBe('999');
    expect(formatCount(9_999)).toBe('9,999');
    expect(formatCount(12_345)).toBe('12.3k');
    expect(formatCount(2_500_000)).toBe('2.5M');
    expect(formatCount(undefined)).toBe('—');
  });

  it('shows money with cents, and tiny amounts with enough digits to not read as zero', () => {
    expect(formatUsd(0)).toBe('$0.00');
    expect(formatUsd(1234.5)).toBe('$1,234.50');
    expect(formatUsd(0.00042)).toBe('$0.0004');
  });

  it('shows shares as percentages with a decimal only where it matters', () => {
    expect(formatPercent(1)).toBe('100%');
    expect(formatPercent(0.5)).toBe('50%');
    expect(formatPercent(0.025)).toBe('2.5%');
    expect(formatPercent(0.0002)).toBe('<0.1%');
    expect(formatPercent(0)).toBe('0%');
    expect(formatPercent(Number.NaN)).toBe('—');
  });

  it('shows latency in ms below a second and in seconds above', () => {
    expect(formatMs(12.4)).toBe('12 ms');
    expect(formatMs(4.46)).toBe('4.5 ms');
    expect(formatMs(3)).toBe('3 ms');
    expect(formatMs(1530)).toBe('1.53 s');
    expect(formatMs(45_000)).toBe('45 s');
    expect(formatRate(0.25)).toBe('0.3/s');
    expect(formatRate(20)).toBe('20/s');
  });

  it('counts down a cooldown in the largest sensible units, never below zero', () => {
    const now = 1_000_000;
    expect(formatCountdown(now + 4_200, now)).toBe('5s');
    expect(formatCountdown(now + 245_000, now)).toBe('4m 05s');
    expect(formatCountdown(now + 2 * 3600_000 + 600_000, now)).toBe('2h 10m');
    expect(formatCountdown(now + 76 * 3600_000, now)).toBe('3d 4h');
    expect(formatCountdown(now - 5000, now)).toBe('0s');
  });

  it('says how long ago something happened', () => {
    const now = Date.UTC(2026, 10, 25, 12);
    expect(formatAgo(now - 1000, now)).toBe('just now');
    expect(formatAgo(now - 30_000, now)).toBe('30 s ago');
    expect(formatAgo(now - 5 * 60_000, now)).toBe('5 min ago');
  });

  it('finds the local start of the day and the month', () => {
    const now = new Date(2026, 10, 25, 15, 30).getTime();
    expect(startOfDay(now)).toBe(new Date(2026, 10, 25).getTime());
    expect(startOfMonth(now)).toBe(new Date(2026, 10, 1).getTime());
  });
});
