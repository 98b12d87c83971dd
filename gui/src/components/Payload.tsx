// A stored message: payload as JSON (pretty), text, hex or base64; headers; lineage
// headers. A payload that is not readable text (not UTF-8, or control characters
// that would draw as boxes) opens as hex.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { StoredMessage } from '../api';
import {
  bytes,
  headerEntries,
  hexDump,
  isBinaryPayload,
  isLineageHeader,
  payloadBytes,
  prettyJson,
  time,
  toBase64,
} from '../format';
import { Link } from '../router';

type View = 'json' | 'text' | 'hex' | 'base64';

function defaultView(message: StoredMessage, json: string | null): View {
  if (isBinaryPayload(message)) return 'hex';
  return json !== null ? 'json' : 'text';
}

export function MessageView({ message, onClose }: { message: StoredMessage; onClose?: () => void }) {
  const raw = payloadBytes(message);
  const text = message.payload ?? null;
  const json = text !== null ? prettyJson(text) : null;
  const binary = isBinaryPayload(message);
  const [view, setView] = useState<View>(defaultView(message, json));
  // Another message in the same view starts on its own default.
  useEffect(() => setView(defaultView(message, json)), [message.seq]);
  const headers = headerEntries(message.headers);
  const lineage = headers.filter(([k]) => isLineageHeader(k));
  const plain = headers.filter(([k]) => !isLineageHeader(k));
  const msgId = lineage.find(([k]) => /^junction-msg-id$/i.test(k))?.[1];
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    // The view may open below a long table: bring it into sight and move focus to it.
    heading.current?.scrollIntoView({ block: 'start', behavior: 'smooth' });
    heading.current?.focus({ preventScroll: true });
  }, [message.seq]);
  const views: [View, string, boolean][] = [
    ['json', 'JSON', json !== null],
    ['text', 'Text', text !== null],
    ['hex', 'Hex', true],
    ['base64', 'Base64', true],
  ];
  return (
    <article class="message" aria-labelledby="message-title" data-testid="message-view">
      <header class="row">
        <h3 id="message-title" ref={heading} tabIndex={-1}>
          Message #{message.seq}
        </h3>
        {onClose && (
          <button type="button" onClick={onClose} aria-label="Close message">
            Close
          </button>
        )}
      </header>
      <dl class="facts">
        <dt>Subject</dt>
        <dd>
          <code>{message.subject}</code>
        </dd>
        <dt>Stored</dt>
        <dd>
          <time dateTime={message.time}>{time(message.time)}</time>
        </dd>
        <dt>Size</dt>
        <dd>
          {bytes(raw.length)}
          {binary && (
            <span class="muted" data-testid="payload-kind">
              {' '}
              · binary ({text === null ? 'not UTF-8' : 'control characters'})
            </span>
          )}
        </dd>
      </dl>
      <div role="tablist" aria-label="Payload view" class="tabs">
        {views.map(([v, label, enabled]) => (
          <button
            type="button"
            role="tab"
            aria-selected={view === v}
            disabled={!enabled}
            onClick={() => setView(v)}
            key={v}
          >
            {label}
          </button>
        ))}
      </div>
      <pre class={view === 'base64' || view === 'text' ? 'payload wrap' : 'payload'} role="tabpanel" tabIndex={0} data-testid="payload">
        {view === 'json' ? json : view === 'text' ? text : view === 'base64' ? toBase64(raw) || '(empty)' : hexDump(raw)}
      </pre>
      <HeaderTable title="Headers" rows={plain} empty="No headers." />
      <HeaderTable title="Lineage headers" rows={lineage} empty="No lineage headers on this message." />
      {msgId && (
        <p>
          <Link href={`/lineage?id=${encodeURIComponent(msgId)}`}>This message's journey</Link>
        </p>
      )}
    </article>
  );
}

function HeaderTable({ title, rows, empty }: { title: string; rows: [string, string][]; empty: string }) {
  return (
    <section>
      <h4>{title}</h4>
      {rows.length === 0 ? (
        <p class="muted">{empty}</p>
      ) : (
        <table class="compact">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Value</th>
            </tr>
          </thead>
          <tbody>
            {rows.map(([k, v], i) => (
              <tr key={i}>
                <td>
                  <code>{k}</code>
                </td>
                <td>
                  <code>{v}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
