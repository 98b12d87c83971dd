// Formatting of numbers, sizes, times and payloads.
import type { Headers, StoredMessage } from './api';

const nf = new Intl.NumberFormat();
export const num = (n: number | null | undefined) => (n === null || n === undefined ? '—' : nf.format(n));

export function rate(n: number): string {
  if (!isFinite(n)) return '—';
  return n >= 100 ? nf.format(Math.round(n)) : n.toFixed(1);
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  if (n < 0) return 'unlimited';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export const limit = (n: number) => (n < 0 ? 'unlimited' : nf.format(n));

export function duration(ms: number): string {
  if (ms <= 0) return 'forever';
  const s = ms / 1000;
  if (s < 60) return `${+s.toFixed(1)} s`;
  if (s < 3600) return `${+(s / 60).toFixed(1)} min`;
  if (s < 86400) return `${+(s / 3600).toFixed(1)} h`;
  return `${+(s / 86400).toFixed(1)} d`;
}

export function time(t: string | null | undefined): string {
  if (!t) return '—';
  const d = new Date(t);
  return isNaN(d.getTime()) ? t : d.toLocaleString();
}

export function ago(t: string | null | undefined): string {
  if (!t) return '—';
  const s = (Date.now() - new Date(t).getTime()) / 1000;
  if (!isFinite(s)) return t;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** The payload's bytes, whichever way the API sent them. */
export function payloadBytes(m: { payload?: string; payload_base64?: string }): Uint8Array {
  if (m.payload !== undefined) return new TextEncoder().encode(m.payload);
  if (m.payload_base64 !== undefined) {
    const bin = atob(m.payload_base64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  return new Uint8Array();
}

/**
 * Whether text reads as text: no control characters other than tab, line feed and
 * carriage return (NUL, escape and the like draw as boxes), and no U+FFFD.
 */
export function isReadableText(text: string): boolean {
  return !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufffd]/.test(text);
}

/** A payload that is not readable text: not UTF-8 (`payload_base64`), or control characters. */
export function isBinaryPayload(m: { payload?: string; payload_base64?: string }): boolean {
  if (m.payload !== undefined) return !isReadableText(m.payload);
  return m.payload_base64 !== undefined;
}

/** Standard, padded base64 of bytes. */
export function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Space-separated hex of the first bytes, for one-line previews. */
export function hexPreview(b: Uint8Array, max = 24): string {
  const hex = Array.from(b.subarray(0, max), (x) => x.toString(16).padStart(2, '0')).join(' ');
  return b.length > max ? `${hex} …` : hex;
}

export function payloadPreview(m: StoredMessage, max = 80): string {
  if (isBinaryPayload(m)) {
    const raw = payloadBytes(m);
    return `(binary, ${raw.length} B) ${hexPreview(raw)}`;
  }
  if (m.payload !== undefined && m.payload !== '') return m.payload.length > max ? `${m.payload.slice(0, max)}…` : m.payload;
  return '(empty)';
}

/** Pretty JSON, or null when the text is not JSON. */
export function prettyJson(text: string): string | null {
  const t = text.trim();
  if (!t || !'{["'.includes(t[0]) && !/^(-?\d|true|false|null)/.test(t)) return null;
  try {
    return JSON.stringify(JSON.parse(t), null, 2);
  } catch {
    return null;
  }
}

/** A classic hex dump: offset, 16 bytes in hex, printable ASCII. */
export function hexDump(b: Uint8Array): string {
  const lines: string[] = [];
  for (let off = 0; off < b.length; off += 16) {
    const row = b.subarray(off, off + 16);
    const hex = Array.from(row, (x) => x.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (x) => (x >= 32 && x < 127 ? String.fromCharCode(x) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n') || '(empty)';
}

/** Header entries, a repeated name giving one entry per value. */
export function headerEntries(h: Headers): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(h ?? {})) {
    if (Array.isArray(v)) v.forEach((x) => out.push([k, x]));
    else out.push([k, v]);
  }
  return out;
}

/** Lineage headers are the engine's reserved `Junction-*` ones and W3C trace context. */
export const isLineageHeader = (name: string) =>
  /^junction-/i.test(name) || /^(traceparent|tracestate)$/i.test(name);
