// A live line chart on uPlot.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useEffect, useRef, useState } from 'preact/hooks';

/** The theme's colours (a canvas cannot use CSS variables), re-read when the theme changes. */
function useThemeColors(): { fg: string; grid: string } {
  const read = () => {
    const css = getComputedStyle(document.documentElement);
    return { fg: css.getPropertyValue('--fg').trim() || '#888', grid: css.getPropertyValue('--grid').trim() || '#8884' };
  };
  const [colors, setColors] = useState(read);
  useEffect(() => {
    const update = () => setColors(read());
    const observer = new MutationObserver(update);
    observer.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
    const media = matchMedia('(prefers-color-scheme: dark)');
    media.addEventListener('change', update);
    return () => {
      observer.disconnect();
      media.removeEventListener('change', update);
    };
  }, []);
  return colors;
}

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
  const colors = useThemeColors();

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(280, el.clientWidth),
      height: 200,
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: false } }))],
      axes: [
        { stroke: colors.fg, grid: { stroke: colors.grid }, ticks: { stroke: colors.grid } },
        {
          stroke: colors.fg,
          grid: { stroke: colors.grid },
          ticks: { stroke: colors.grid },
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
  }, [series.map((s) => s.label).join(), colors.fg, colors.grid]);

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
