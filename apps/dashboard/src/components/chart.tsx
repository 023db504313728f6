// Time-series charts with uPlot (about 50 kB, canvas): fast enough to redraw every second.
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface ChartSeries {
  label: string;
  values: ReadonlyArray<number | null>;
  color: string;
  /** Draw as bars (daily totals) instead of a line. */
  bars?: boolean;
}

export interface TimeChartProps {
  title: string;
  /** Epoch seconds. */
  x: readonly number[];
  series: readonly ChartSeries[];
  height?: number;
  format?(value: number): string;
  /** What the chart shows, for people who cannot see it. */
  summary: string;
}

const barsPath = uPlot.paths.bars?.({ size: [0.6, 40] });

export function TimeChart({ title, x, series, height = 180, format, summary }: TimeChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const shape = series.map((s) => `${s.label}:${s.bars ? 'b' : 'l'}`).join('|');

  // Build once per series shape; later data only calls setData.
  // biome-ignore lint/correctness/useExhaustiveDependencies: rebuilt only when the series shape changes
  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const width = Math.max(240, el.clientWidth);
    const opts: uPlot.Options = {
      width,
      height,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [
        { stroke: '#333' },
        {
          stroke: '#333',
          size: 56,
          ...(format !== undefined && { values: (_u, ticks) => ticks.map((v) => format(v)) }),
        },
      ],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          ...(s.bars && barsPath !== undefined && { paths: barsPath, fill: `${s.color}99` }),
          ...(format !== undefined && {
            value: (_u: uPlot, v: number | null) => (v === null ? '—' : format(v)),
          }),
        })),
      ],
    };
    plot.current = new uPlot(opts, [x as number[], ...series.map((s) => s.values as number[])], el);
    const observer = new ResizeObserver(() => {
      plot.current?.setSize({ width: Math.max(240, el.clientWidth), height });
    });
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.current?.destroy();
      plot.current = undefined;
    };
  }, [shape, height]);

  useEffect(() => {
    plot.current?.setData([x as number[], ...series.map((s) => s.values as number[])]);
  }, [x, series]);

  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} className="chart-canvas" role="img" aria-label={`${title}: ${summary}`} />
    </figure>
  );
}
