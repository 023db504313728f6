/**
 * Daily and monthly windows in a time zone. They roll over by themselves: the
 * window id is derived from the time, so no cron resets anything. Boundaries
 * are cached because Intl formatting is far too slow for the acquire hot path.
 */
export interface CalendarWindow {
  day: string;
  month: string;
  dayStartsAt: number;
  dayEndsAt: number;
  monthEndsAt: number;
}

export class Calendar {
  readonly timeZone: string;
  private readonly format: Intl.DateTimeFormat;
  private current: CalendarWindow | undefined;

  constructor(timeZone = 'UTC') {
    try {
      this.format = new Intl.DateTimeFormat('en-US', {
        timeZone,
        hourCycle: 'h23',
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        minute: '2-digit',
        second: '2-digit',
      });
    } catch {
      throw new RangeError(
        `timeZone "${timeZone}" is not a valid IANA time zone (e.g. "UTC", "Europe/Berlin")`,
      );
    }
    this.timeZone = timeZone;
  }

  at(now: number): CalendarWindow {
    const cached = this.current;
    if (cached !== undefined && now >= cached.dayStartsAt && now < cached.dayEndsAt) return cached;
    const { year, month, day } = this.parts(now);
    const window: CalendarWindow = {
      day: `${year}-${pad(month)}-${pad(day)}`,
      month: `${year}-${pad(month)}`,
      dayStartsAt: this.zonedMidnight(year, month, day),
      dayEndsAt: this.zonedMidnight(year, month, day + 1),
      monthEndsAt: this.zonedMidnight(year, month + 1, 1),
    };
    this.current = window;
    return window;
  }

  private parts(time: number) {
    const values: Record<string, number> = {};
    for (const part of this.format.formatToParts(time)) {
      if (part.type !== 'literal') values[part.type] = Number(part.value);
    }
    return {
      year: values.year ?? 1970,
      month: values.month ?? 1,
      day: values.day ?? 1,
      hour: values.hour ?? 0,
      minute: values.minute ?? 0,
      second: values.second ?? 0,
    };
  }

  /** Offset of the zone from UTC at `time`, in ms. */
  private offsetAt(time: number): number {
    const p = this.parts(time);
    const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
    return asUtc - Math.floor(time / 1000) * 1000;
  }

  /** Epoch ms of 00:00 local time on the given (possibly overflowing) date. */
  private zonedMidnight(year: number, month: number, day: number): number {
    const naive = Date.UTC(year, month - 1, day);
    // Two passes settle the offset across a DST change near midnight.
    let guess = naive - this.offsetAt(naive);
    guess = naive - this.offsetAt(guess);
    return guess;
  }
}

function pad(value: number): string {
  return value < 10 ? `0${value}` : String(value);
}
