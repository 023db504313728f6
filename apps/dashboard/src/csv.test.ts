import { describe, expect, it } from 'vitest';
import { csvCell, toCsv } from './csv.js';

describe('csv', () => {
  it('writes a header and one CRLF line per row', () => {
    const text = toCsv(
      [
        { key: 'a', requests: 3, cost: 0.5 },
        { key: 'b', requests: 0, cost: 0 },
      ],
      [
        { header: 'key', value: (r) => r.key },
        { header: 'requests', value: (r) => r.requests },
        { header: 'cost_usd', value: (r) => r.cost },
      ],
    );
    expect(text).toBe('key,requests,cost_usd\r\na,3,0.5\r\nb,0,0\r\n');
  });

  it('quotes commas, quotes and line breaks', () => {
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('two\nlines')).toBe('"two\nlines"');
  });

  it('defuses cells a spreadsheet would run as formulas, but not negative numbers', () => {
    expect(csvCell('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
    expect(csvCell('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvCell(-3)).toBe('-3');
  });

  it('leaves missing values empty', () => {
    expect(csvCell(undefined)).toBe('');
    expect(csvCell(null)).toBe('');
    expect(csvCell(Number.NaN)).toBe('');
  });
});
