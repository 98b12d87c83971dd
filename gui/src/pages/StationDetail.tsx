// One station: figures, message browser (paging, jump, live tail), a message's
// payload and headers, a test-message form, and its consumer groups.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, publishHeaders, type Station, type StoredMessage, type TierState } from '../api';
import { MessageView } from '../components/Payload';
import { StationForm } from '../components/StationForm';
import { SubjectChips } from '../components/Subjects';
import { ErrorNote, Loading } from '../components/Status';
import { bytes, duration, limit, num, payloadBytes, payloadPreview, time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { subscribe, useLiveStatus } from '../live';
import { Link, navigate, setQuery, stationHref, useLocation } from '../router';
import { Groups } from './Groups';
import { StationConfirm } from './Stations';

const PAGE = 50;
const TAIL_MAX = 500;
const LIVE_MAX_SUBJECTS = 100;

export function StationDetail({ name: encoded }: { name: string }) {
  const name = decodeURIComponent(encoded);
  useTitle(name);
  const { query } = useLocation();
  const { data: station, error, reload } = useLoad(() => api.station(name), [name], 5000);
  const [editing, setEditing] = useState(false);
  const [confirm, setConfirm] = useState<'delete' | 'purge'>();
  const seq = query.get('seq');

  if (error && !station) {
    return (
      <section>
        <h1 tabIndex={-1}>{name}</h1>
        <ErrorNote error={error} what="Could not read this station" />
        <p>
          <Link href="/stations">All stations</Link>
        </p>
      </section>
    );
  }
  if (!station) return <Loading what={`Loading ${name}`} />;
  const s = station.state;
  return (
    <section>
      <nav aria-label="Breadcrumb" class="crumbs">
        <Link href="/stations">Stations</Link> / <span aria-current="page">{name}</span>
      </nav>
      <div class="row">
        <h1 tabIndex={-1}>{name}</h1>
        <div class="actions">
          <Link href={`${stationHref(name)}/dls`} class="button">
            Dead letters
          </Link>
          <button type="button" onClick={() => setEditing(true)}>
            Edit
          </button>
          <button type="button" onClick={() => setConfirm('purge')}>
            Purge
          </button>
          <button type="button" class="danger" onClick={() => setConfirm('delete')}>
            Delete
          </button>
        </div>
      </div>
      {station.description && <p>{station.description}</p>}
      {editing && (
        <StationForm
          station={station}
          onCancel={() => setEditing(false)}
          onSaved={() => {
            setEditing(false);
            reload();
          }}
        />
      )}
      <dl class="cards" data-testid="station-cards">
        <div class="card">
          <dt>Messages</dt>
          <dd class="big" data-testid="station-messages">
            {num(s.messages)}
          </dd>
          <dd class="muted">{bytes(s.bytes)}</dd>
        </div>
        <div class="card">
          <dt>Sequences</dt>
          <dd class="big">
            {num(s.first_seq)}–{num(s.last_seq)}
          </dd>
          <dd class="muted">last {time(s.last_time)}</dd>
        </div>
        <div class="card" data-testid="subjects-card">
          <dt>Subjects</dt>
          <dd>
            <SubjectChips subjects={station.subjects} max={8} station={name} />
          </dd>
          <dd class="muted">
            {station.subjects.length > 1 && `${num(station.subjects.length)} captured · `}
            {num(s.num_subjects)} distinct stored
          </dd>
        </div>
        <div class="card">
          <dt>Retention</dt>
          <dd>
            {station.retention.policy}; {duration(station.retention.max_age_ms)}; {limit(station.retention.max_msgs)} msgs;{' '}
            {bytes(station.retention.max_bytes)}; discard {station.retention.discard}
          </dd>
          <dd class="muted">
            {station.storage} storage, dedup {duration(station.duplicate_window_ms)}
          </dd>
        </div>
        {s.tier && <TierCard tier={s.tier} />}
        <div class="card">
          <dt>Schema</dt>
          <dd>
            {station.schema ? (
              <Link href={`/schemas?schema=${encodeURIComponent(station.schema)}`}>
                {station.schema}
                {station.schema_version ? ` v${station.schema_version}` : ''}
              </Link>
            ) : (
              'none attached'
            )}
          </dd>
        </div>
      </dl>
      <Replicas station={station} onChanged={reload} />
      <Origins station={station} />
      <Browser station={station} />
      {seq && <SelectedMessage station={name} seq={Number(seq)} />}
      <Produce station={station} onSent={reload} />
      <Groups station={name} />
      {confirm && (
        <StationConfirm
          kind={confirm}
          station={station}
          onDone={() => {
            setConfirm(undefined);
            reload();
          }}
          onDeleted={() => navigate('/stations')}
        />
      )}
    </section>
  );
}

/** A tiered station: what is local, what is in the bucket, and how reads went. */
function TierCard({ tier: t }: { tier: TierState }) {
  const reads = t.cache_hits + t.cache_misses;
  return (
    <div class="card" data-testid="tier-card">
      <dt>Tiered storage</dt>
      <dd>
        <span data-testid="tier-local">
          {num(t.local_messages)} local ({bytes(t.local_bytes)}) from #{num(t.local_first_seq)}
        </span>
        {' · '}
        <span data-testid="tier-remote">
          {num(t.remote_messages)} only in S3 ({bytes(t.remote_bytes)} in {num(t.segments)} segments)
        </span>
      </dd>
      <dd class="muted">
        <span data-testid="tier-lag">
          {t.upload_lag_messages === 0
            ? 'everything uploaded'
            : `${num(t.upload_lag_messages)} waiting to upload${t.upload_lag_ms > 0 ? ` (oldest ${duration(t.upload_lag_ms)})` : ''}`}
        </span>
        {' · '}
        <span data-testid="tier-cache">
          {reads === 0
            ? 'no remote reads yet'
            : `read cache ${Math.round((100 * t.cache_hits) / reads)}% hits of ${num(reads)} block reads`}
        </span>
      </dd>
    </div>
  );
}

function SelectedMessage({ station, seq }: { station: string; seq: number }) {
  const { data, error } = useLoad(() => api.message(station, seq), [station, seq]);
  const close = () => setQuery({ seq: null });
  if (error) return <ErrorNote error={error} what={`Message #${seq}`} />;
  if (!data) return <Loading what={`Loading message #${seq}`} />;
  return <MessageView message={data} onClose={close} />;
}

/** The message browser: a live tail of the newest, or pages from a sequence or time. */
function Browser({ station }: { station: Station }) {
  const name = station.name;
  const { query } = useLocation();
  const from = query.get('from');
  const at = query.get('time');
  const tail = from === null && at === null;
  const [messages, setMessages] = useState<StoredMessage[]>([]);
  const [error, setError] = useState<ApiError>();
  const [loading, setLoading] = useState(true);
  const [paused, setPaused] = useState(false);
  const [jumpSeq, setJumpSeq] = useState('');
  const [jumpTime, setJumpTime] = useState('');
  const [nextSeq, setNextSeq] = useState(0);
  const live = useLiveStatus();
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  const subjects = station.subjects.join('\n');

  useEffect(() => {
    let stopped = false;
    let next = 0;
    let inflight = false;
    let again = false;
    setLoading(true);
    setError(undefined);

    const pull = async () => {
      if (inflight) {
        again = true;
        return;
      }
      inflight = true;
      try {
        do {
          again = false;
          const page = await api.browse(name, { from_seq: next, limit: 200 });
          if (stopped) return;
          if (page.messages.length) {
            setMessages((old) => [...old, ...page.messages].slice(-TAIL_MAX));
            next = page.next_seq;
            setNextSeq(next);
          }
          if (page.messages.length === 200) again = true;
        } while (again && !stopped);
      } catch (e) {
        if (!stopped) setError(e as ApiError);
      } finally {
        inflight = false;
      }
    };

    const start = async () => {
      try {
        if (tail) {
          const st = await api.station(name);
          const first = Math.max(st.state.first_seq, st.state.last_seq - PAGE + 1, 1);
          const page = await api.browse(name, { from_seq: first, limit: PAGE });
          if (stopped) return;
          setMessages(page.messages);
          next = Math.max(page.next_seq, st.state.last_seq + 1);
        } else {
          const page = await api.browse(name, from !== null ? { from_seq: Number(from), limit: PAGE } : { from_time: at ?? undefined, limit: PAGE });
          if (stopped) return;
          setMessages(page.messages);
          next = page.next_seq;
        }
        setNextSeq(next);
        setLoading(false);
      } catch (e) {
        if (!stopped) {
          setError(e as ApiError);
          setLoading(false);
        }
      }
    };
    start();
    if (!tail) return () => void (stopped = true);

    // Live tail: a live message on one of the station's subjects triggers a read of
    // what was stored since `next` (live frames carry no sequence); a slow poll
    // covers brokers where the browser cannot open the WebSocket (auth on).
    const onLive = () => {
      if (!pausedRef.current) pull();
    };
    // A station with very many subjects is polled only: one live subscription per
    // subject would be thousands.
    const unsubs = station.subjects.length <= LIVE_MAX_SUBJECTS ? station.subjects.map((subject) => subscribe(subject, onLive)) : [];
    const poll = setInterval(() => {
      if (!pausedRef.current && document.visibilityState === 'visible') pull();
    }, 3000);
    return () => {
      stopped = true;
      unsubs.forEach((u) => u());
      clearInterval(poll);
    };
  }, [name, tail, from, at, subjects]);

  const first = messages[0]?.seq;
  const older = () => setQuery({ from: String(Math.max(station.state.first_seq || 1, (first ?? 1) - PAGE)), time: null }, false);
  const newer = () => setQuery({ from: String(nextSeq), time: null }, false);
  const jump = (e: Event) => {
    e.preventDefault();
    if (jumpSeq.trim()) setQuery({ from: String(Math.max(1, Number(jumpSeq) || 1)), time: null, seq: null }, false);
    else if (jumpTime) setQuery({ time: new Date(jumpTime).toISOString(), from: null, seq: null }, false);
  };
  const shown = tail ? [...messages].reverse() : messages;
  const selected = Number(new URLSearchParams(location.search).get('seq'));

  return (
    <section aria-labelledby="browser-title" class="panel">
      <div class="row">
        <h2 id="browser-title">Messages</h2>
        <div class="actions" role="group" aria-label="Browse mode">
          <button
            type="button"
            aria-pressed={tail}
            onClick={() => setQuery({ from: null, time: null }, false)}
            data-testid="live-tail"
          >
            Live tail
          </button>
          {tail && (
            <button type="button" aria-pressed={paused} onClick={() => setPaused(!paused)}>
              {paused ? 'Resume' : 'Pause'}
            </button>
          )}
        </div>
      </div>
      <p class="muted small" aria-live="polite">
        {tail
          ? `Newest first; ${paused ? 'paused' : live === 'open' && station.subjects.length <= LIVE_MAX_SUBJECTS ? 'live over WebSocket' : 'refreshing every 3 s'}.`
          : from !== null
            ? `From sequence ${from}.`
            : `From ${time(at)}.`}
      </p>
      <form class="jump" onSubmit={jump}>
        <label>
          Jump to sequence
          <input inputMode="numeric" value={jumpSeq} onInput={(e) => setJumpSeq(e.currentTarget.value)} placeholder={String(station.state.first_seq || 1)} />
        </label>
        <label>
          or time
          <input type="datetime-local" step="1" value={jumpTime} onInput={(e) => setJumpTime(e.currentTarget.value)} />
        </label>
        <button type="submit">Go</button>
        {!tail && (
          <>
            <button type="button" onClick={older} disabled={!first || first <= (station.state.first_seq || 1)}>
              ← Older
            </button>
            <button type="button" onClick={newer} disabled={nextSeq > station.state.last_seq}>
              Newer →
            </button>
          </>
        )}
      </form>
      {error && <ErrorNote error={error} what="Could not read messages" />}
      {loading ? (
        <Loading what="Loading messages" />
      ) : shown.length === 0 ? (
        <p class="muted" data-testid="no-messages">
          No messages {tail ? 'yet; new ones appear here as they are stored' : 'here'}.
        </p>
      ) : (
        <div class="table-wrap">
          <table class="messages" data-testid="messages-table">
            <thead>
              <tr>
                <th scope="col" class="num">
                  Seq
                </th>
                <th scope="col">Stored</th>
                <th scope="col">Subject</th>
                <th scope="col" class="num">
                  Size
                </th>
                <th scope="col">Payload</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((m) => (
                <tr key={m.seq} aria-selected={selected === m.seq} data-seq={m.seq}>
                  <td class="num">
                    <a
                      href={`?${withSeq(m.seq)}`}
                      onClick={(e) => {
                        e.preventDefault();
                        setQuery({ seq: String(m.seq) }, false);
                      }}
                      aria-label={`Open message ${m.seq}`}
                    >
                      {m.seq}
                    </a>
                  </td>
                  <td>
                    <time dateTime={m.time}>{time(m.time)}</time>
                  </td>
                  <td>
                    <code>{m.subject}</code>
                  </td>
                  <td class="num">{bytes(payloadBytes(m).length)}</td>
                  <td class="preview">{payloadPreview(m)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function withSeq(seq: number): string {
  const q = new URLSearchParams(location.search);
  q.set('seq', String(seq));
  return q.toString();
}

/** What a mirror or sourced station copies from, locally or from another
 * broker (geo-replication): the last origin sequence copied, the lag, when the
 * origin was last heard from, and the link's error while it lasts. The page
 * reloads every 5 s, so these follow the link. */
function Origins({ station }: { station: Station }) {
  const rows = station.mirror ? [station.mirror] : station.sources ?? [];
  if (rows.length === 0) return null;
  const seen = (ms: number) => (ms < 0 ? 'never' : ms < 1000 ? 'just now' : `${duration(ms)} ago`);
  return (
    <section aria-labelledby="origins-title" class="panel" data-testid="origins">
      <h2 id="origins-title">{station.mirror ? 'Mirror of' : 'Sources'}</h2>
      <div class="table-wrap">
        <table data-testid="origins-table">
          <thead>
            <tr>
              <th scope="col">Origin</th>
              <th scope="col">Broker</th>
              <th scope="col">Filter</th>
              <th scope="col" class="num" title="The last origin sequence copied">
                Last copied
              </th>
              <th scope="col" class="num" title="Origin messages not copied yet">
                Lag
              </th>
              <th scope="col">Last seen</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((o) => (
              <tr key={`${o.name} ${o.remote ?? ''} ${o.filter_subject ?? ''}`} data-origin={o.name}>
                <td>{o.name}</td>
                <td data-testid="origin-broker">{o.remote ? o.remote.replace(/^[^@]*@/, '') : 'this broker'}</td>
                <td>{o.filter_subject ?? 'all'}</td>
                <td class="num" data-testid="origin-last-seq">
                  {num(o.last_seq)}
                </td>
                <td class="num" data-testid="origin-lag">
                  {num(o.lag)}
                </td>
                <td data-testid="origin-seen">{seen(o.active_ms)}</td>
                <td data-testid="origin-state">
                  {o.error ? (
                    <span class="badge warn" title={o.error}>
                      {o.error}
                    </span>
                  ) : (
                    <span class="badge">{o.lag === 0 ? 'caught up' : 'copying'}</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

/** A replicated station's replicas: leader, which are online and current, how
 * far behind; hand the leadership over, or move a replica to a spare node. */
function Replicas({ station, onChanged }: { station: Station; onChanged: () => void }) {
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState<string>();
  const [err, setErr] = useState<ApiError>();
  const c = station.cluster;
  if (!c) return null;
  const run = async (what: () => Promise<string>) => {
    setBusy(true);
    setErr(undefined);
    setNote(undefined);
    try {
      setNote(await what());
      onChanged();
    } catch (e) {
      setErr(e instanceof ApiError ? e : new ApiError(0, '', String(e)));
    } finally {
      setBusy(false);
    }
  };
  const good = c.replicas.filter((r) => r.online && r.current).length;
  return (
    <section aria-labelledby="replicas-title" class="panel" data-testid="replicas">
      <div class="row">
        <h2 id="replicas-title">Replicas</h2>
        <div class="actions">
          <button
            type="button"
            disabled={busy || !c.leader}
            onClick={() => run(async () => `Asked ${(await api.stepDown(station.name)).asked} to take the lead.`)}
          >
            Step down leader
          </button>
        </div>
      </div>
      <p data-testid="replicas-summary">
        {c.under_replicated ? (
          <span class="badge warn" data-testid="under-replicated">
            under-replicated
          </span>
        ) : (
          <span class="badge">fully replicated</span>
        )}{' '}
        {good} of {station.replicas} replicas online and current. Leader:{' '}
        <strong data-testid="replicas-leader">{c.leader ?? 'none (an election, or no quorum)'}</strong>.
      </p>
      <div class="table-wrap">
        <table data-testid="replicas-table">
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">Role</th>
              <th scope="col">State</th>
              <th scope="col" class="num" title="Raft log entries behind the leader">
                Lag
              </th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {c.replicas.map((r) => (
              <tr key={r.name} data-replica={r.name}>
                <td>{r.name}</td>
                <td>{r.leader ? 'leader' : 'follower'}</td>
                <td>
                  <span class={`badge ${r.online && r.current ? '' : 'warn'}`}>
                    {!r.online ? 'offline' : r.current ? 'current' : 'catching up'}
                  </span>
                </td>
                <td class="num">{num(r.lag)}</td>
                <td class="actions-cell">
                  <button
                    type="button"
                    disabled={busy}
                    aria-label={`Move the replica off ${r.name}`}
                    onClick={() =>
                      run(async () => {
                        await api.peerRemove(station.name, r.name);
                        return `The replica on ${r.name} is moving to a spare node.`;
                      })
                    }
                  >
                    Move
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {note && (
        <p role="status" class="ok" data-testid="replicas-note">
          {note}
        </p>
      )}
      {err && <ErrorNote error={err} what="Refused" />}
    </section>
  );
}

/** Produce a test message into the station. */
function Produce({ station, onSent }: { station: Station; onSent: () => void }) {
  const literal = station.subjects.filter((s) => !/[*>]/.test(s));
  const [subject, setSubject] = useState(literal[0] ?? '');
  const [headers, setHeaders] = useState('');
  const [payload, setPayload] = useState('{"hello":"junction"}');
  const [key, setKey] = useState('');
  const [result, setResult] = useState<string>();
  const [error, setError] = useState<ApiError>();
  const [headerError, setHeaderError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const parseHeaders = (): [string, string][] | null => {
    const out: [string, string][] = [];
    for (const line of headers.split('\n')) {
      if (!line.trim()) continue;
      const i = line.indexOf(':');
      const k = i > 0 ? line.slice(0, i).trim() : '';
      if (!k || !/^[A-Za-z0-9-]+$/.test(k)) {
        setHeaderError(`"${line}" is not "Name: value" (letters, digits and - in the name).`);
        return null;
      }
      out.push([k, line.slice(i + 1).trim()]);
    }
    setHeaderError(undefined);
    return out;
  };

  const send = async (e: Event) => {
    e.preventDefault();
    const h = parseHeaders();
    if (!h) return;
    setBusy(true);
    setError(undefined);
    setResult(undefined);
    try {
      const ack = await api.publishToStation(station.name, subject.trim(), payload, publishHeaders(h, key.trim() || undefined));
      setResult(
        ack.seq !== undefined
          ? `Stored as #${ack.seq}${ack.duplicate ? ' (a duplicate of an earlier message: nothing new stored)' : ''}.`
          : `Delivered to ${ack.delivered ?? 0} live subscriptions.`,
      );
      onSent();
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="produce-title" class="panel">
      <h2 id="produce-title">Produce a test message</h2>
      <form class="form" onSubmit={send} data-testid="produce-form">
        <div class="grid2">
          <label>
            Subject
            <input
              value={subject}
              list="produce-subjects"
              required
              placeholder={station.subjects[0]}
              onInput={(e) => setSubject(e.currentTarget.value)}
            />
            <datalist id="produce-subjects">
              {literal.slice(0, 200).map((s) => (
                <option key={s} value={s} />
              ))}
            </datalist>
            <small class="muted">
              Must be captured by {station.subjects.slice(0, 5).join(', ')}
              {station.subjects.length > 5 && ` and ${num(station.subjects.length - 5)} more subjects`}
            </small>
          </label>
          <label>
            Idempotency key (optional)
            <input value={key} onInput={(e) => setKey(e.currentTarget.value)} />
          </label>
        </div>
        <label>
          Headers (one "Name: value" per line)
          <textarea
            rows={2}
            value={headers}
            onInput={(e) => setHeaders(e.currentTarget.value)}
            aria-invalid={headerError ? true : undefined}
          />
          {headerError && <small class="field-error">{headerError}</small>}
        </label>
        <label>
          Payload
          <textarea rows={4} value={payload} onInput={(e) => setPayload(e.currentTarget.value)} class="mono" />
        </label>
        {error && <ErrorNote error={error} what="The broker refused the message" />}
        {result && (
          <p role="status" class="ok">
            {result}
          </p>
        )}
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Sending…' : 'Send'}
          </button>
        </div>
      </form>
    </section>
  );
}
