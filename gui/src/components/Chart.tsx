// A live line chart on uPlot.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useEffect, useRef } from 'preact/hooks';

export interface Series {
  label: string;
  color: string;
}

interface Props {
  title: string;
  series: Series[];
  /** [timestamps (s), ...one array per series] */
  data: number[][];
  unit?: string;
}

export function Chart({ title, series, data, unit = '/s' }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(280, el.clientWidth),
      height: 200,
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: false } }))],
      axes: [
        { stroke: 'currentColor', grid: { stroke: 'var(--grid)' } as uPlot.Axis.Grid },
        {
          stroke: 'currentColor',
          grid: { stroke: 'var(--grid)' } as uPlot.Axis.Grid,
          values: (_u, ticks) => ticks.map((t) => `${t}${unit}`),
          size: 60,
        },
      ],
      scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      legend: { live: false },
    };
    plot.current = new uPlot(opts, data as uPlot.AlignedData, el);
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(280, el.clientWidth), height: 200 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [series.map((s) => s.label).join()]);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={host} role="img" aria-label={`${title}: line chart`} />
    </figure>
  );
}
