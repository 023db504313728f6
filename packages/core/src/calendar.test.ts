import { describe, expect, it } from 'vitest';
import { Calendar } from './calendar.js';

describe('Calendar', () => {
  it('gives UTC day and month windows with their ends', () => {
    const window = new Calendar('UTC').at(Date.UTC(2026, 10, 30, 23, 59, 59));
    expect(window).toEqual({
      day: '2026-11-30',
      month: '2026-11',
      dayStartsAt: Date.UTC(2026, 10, 30),
      dayEndsAt: Date.UTC(2026, 11, 1),
      monthEndsAt: Date.UTC(2026, 11, 1),
    });
  });

  it('rolls over at local midnight in the configured zone', () => {
    const tokyo = new Calendar('Asia/Tokyo');
    // 15:00 UTC is already midnight in Tokyo (UTC+9).
    expect(tokyo.at(Date.UTC(2026, 0, 31, 14, 59)).day).toBe('2026-01-31');
    expect(tokyo.at(Date.UTC(2026, 0, 31, 15, 0))).toMatchObject({ day: '2026-02-01', month: '2026-02' });
    expect(tokyo.at(Date.UTC(2026, 0, 31, 15, 0)).dayEndsAt).toBe(Date.UTC(2026, 1, 1, 15, 0));
  });

  it('handles days of 23 and 25 hours across DST changes', () => {
    const berlin = new Calendar('Europe/Berlin');
    const spring = berlin.at(Date.UTC(2026, 2, 29, 12));
    expect(spring.dayEndsAt - spring.dayStartsAt).toBe(23 * 3600_000);
    const autumn = berlin.at(Date.UTC(2026, 9, 25, 12));
    expect(autumn.dayEndsAt - autumn.dayStartsAt).toBe(25 * 3600_000);
    expect(autumn.dayStartsAt).toBe(Date.UTC(2026, 9, 24, 22));
  });

  it('refuses an unknown zone with a clear message', () => {
    expect(() => new Calendar('Mars/Olympus')).toThrow(/valid IANA time zone/);
  });
});
