// Live messages over the broker's WebSocket (`/v1/ws`, docs/http.md): one shared
// socket, one subscription per subject filter asked for, reconnecting with
// back-off. Browsers cannot send credentials on a WebSocket, so when the broker
// requires them the socket is refused and callers fall back to polling (no
// faster than once a second).
import { currentAuth } from './api';
import { useEffect, useState } from 'preact/hooks';

export interface LiveMessage {
  subject: string;
  headers: Record<string, string | string[]>;
  payload?: string;
  payload_base64?: string;
}

type Listener = (m: LiveMessage) => void;
type Status = 'connecting' | 'open' | 'unavailable';

let socket: WebSocket | null = null;
let status: Status = 'connecting';
let retry = 0;
let nextSub = 1;
const subs = new Map<string, { subject: string; listener: Listener }>();
const statusListeners = new Set<(s: Status) => void>();

function setStatus(s: Status) {
  status = s;
  statusListeners.forEach((l) => l(s));
}

function send(frame: object) {
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

function connect() {
  if (socket || subs.size === 0) return;
  if (currentAuth()) {
    // The broker needs credentials, which a browser WebSocket cannot carry.
    setStatus('unavailable');
    return;
  }
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
  const ws = new WebSocket(url);
  socket = ws;
  setStatus('connecting');
  ws.onopen = () => {
    retry = 0;
    setStatus('open');
    for (const [sub, { subject }] of subs) send({ op: 'subscribe', sub, subject });
  };
  ws.onmessage = (ev) => {
    let frame: { op?: string; sub?: string } & LiveMessage;
    try {
      frame = JSON.parse(String(ev.data));
    } catch {
      return;
    }
    if (frame.op === 'message' && frame.sub) subs.get(frame.sub)?.listener(frame);
  };
  ws.onclose = () => {
    socket = null;
    setStatus(retry >= 3 ? 'unavailable' : 'connecting');
    if (subs.size === 0) return;
    const delay = Math.min(30_000, 1000 * 2 ** retry++);
    setTimeout(connect, delay);
  };
}

/** Subscribes to live messages on `subject` (wildcards allowed); returns the unsubscribe. */
export function subscribe(subject: string, listener: Listener): () => void {
  const sub = `g${nextSub++}`;
  subs.set(sub, { subject, listener });
  if (socket) send({ op: 'subscribe', sub, subject });
  else connect();
  return () => {
    subs.delete(sub);
    send({ op: 'unsubscribe', sub });
    if (subs.size === 0 && socket) {
      socket.onclose = null;
      socket.close();
      socket = null;
    }
  };
}

/** The live socket's status, re-rendering on change. */
export function useLiveStatus(): Status {
  const [s, set] = useState(status);
  useEffect(() => {
    statusListeners.add(set);
    return () => {
      statusListeners.delete(set);
    };
  }, []);
  return s;
}
