// A station's dead-letter station (docs/dead-letter.md): messages with their
// reasons, resend (selected or all, with progress), drop.
//   GET    /v1/stations/{s}/dls/messages?from_seq=&limit=  → {messages:[…], next_seq}
//   POST   /v1/stations/{s}/dls/resend {ids: [seq…] | "all", target?: "group"|"station"} → 202 task
//   GET    /v1/stations/{s}/dls/resend/{id}                 → the task's progress
//   DELETE /v1/stations/{s}/dls/messages                    → {purged}
//   DELETE /v1/stations/$dls_{s}/messages/{seq}             (the DLS is a normal station)
// Reasons are the copies' Junction-Dls-* headers.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, DLS_PREFIX, WITH_LINEAGE, get, request, type Browse, type ResendTask, type StoredMessage } from '../api';
import { Confirm } from '../components/Confirm';
import { MessageView } from '../components/Payload';
import { ErrorNote, Loading, NotProvided, isMissing } from '../components/Status';
import { headerEntries, num, payloadPreview, time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { Link, stationHref } from '../router';

const enc = encodeURIComponent;
const POLL_MS = 1000;

/** What the Junction-Dls-* headers say, as label/value pairs (the reason first). */
export function reasonOf(m: StoredMessage): { reason: string; details: [string, string][] } {
  const h = headerEntries(m.headers);
  const dls = h.filter(([k]) => /^junction-dls-/i.test(k)).map(([k, v]) => [k.replace(/^junction-dls-/i, ''), v] as [string, string]);
  const reason = dls.find(([k]) => /^reason$/i.test(k))?.[1] ?? 'unknown';
  // Station, subject and timestamp are shown in their own columns.
  const details = dls.filter(([k]) => !/^(reason|station|subject|timestamp)$/i.test(k));
  return { reason, details };
}

const REASONS: Record<string, string> = {
  schema_violation: 'schema violation',
  max_deliveries: 'max deliveries',
  terminated: 'terminated',
};

export function DeadLetter({ station: encoded }: { station: string }) {
  const station = decodeURIComponent(encoded);
  useTitle(`${station} dead letters`);
  const base = `/v1/stations/${enc(station)}/dls`;
  const { data, error, loading, reload } = useLoad(() => request<Browse>('GET', `${base}/messages?limit=200`, { headers: WITH_LINEAGE }), [station], 5000);
  const [selected, setSelected] = useState<Set<number>>(new Set());
  const [open, setOpen] = useState<StoredMessage>();
  const [target, setTarget] = useState<'group' | 'station'>('group');
  const [task, setTask] = useState<ResendTask>();
  const [actionError, setActionError] = useState<ApiError>();
  const [note, setNote] = useState<string>();
  const [purging, setPurging] = useState(false);
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);

  const header = (
    <>
      <nav aria-label="Breadcrumb" class="crumbs">
        <Link href="/stations">Stations</Link> / <Link href={stationHref(station)}>{station}</Link> /{' '}
        <span aria-current="page">dead letters</span>
      </nav>
      <h1 tabIndex={-1}>Dead letters of {station}</h1>
    </>
  );
  if (isMissing(error)) {
    return (
      <section>
        {header}
        <NotProvided feature="dead-letter stations" route={`GET ${base}/messages`} />
      </section>
    );
  }
  if (error?.code === 'dead_letter_station_not_found') {
    return (
      <section>
        {header}
        <section class="notice" role="status" data-testid="no-dls">
          <h2>{station} keeps no dead letters</h2>
          <p>
            Its dead-letter policy has every cause switched off. Edit the{' '}
            <Link href={stationHref(station)}>station</Link> and tick schema violations, max deliveries or terminated
            messages under "Schema and dead letters"; failures are then copied to <code>{DLS_PREFIX + station}</code>.
          </p>
        </section>
      </section>
    );
  }

  const follow = (id: number) => {
    window.clearTimeout(timer.current);
    get<ResendTask>(`${base}/resend/${id}`).then(
      (t) => {
        setTask(t);
        if (t.state === 'running') timer.current = window.setTimeout(() => follow(id), POLL_MS);
        else {
          setSelected(new Set());
          reload();
        }
      },
      (e) => setActionError(e as ApiError),
    );
  };

  const resend = async (ids: number[] | 'all') => {
    setActionError(undefined);
    setNote(undefined);
    try {
      const t = await request<ResendTask>('POST', `${base}/resend`, { body: { ids, target } });
      setTask(t);
      if (t.state === 'running') timer.current = window.setTimeout(() => follow(t.id), 200);
      else follow(t.id);
    } catch (e) {
      setActionError(e as ApiError);
    }
  };

  const drop = async (ids: number[]) => {
    setActionError(undefined);
    setNote(undefined);
    let dropped = 0;
    for (const id of ids) {
      try {
        await request('DELETE', `/v1/stations/${enc(DLS_PREFIX + station)}/messages/${id}`);
        dropped++;
      } catch (e) {
        setActionError(e as ApiError);
        break;
      }
    }
    setNote(`Dropped ${dropped} of ${ids.length}.`);
    setSelected(new Set());
    reload();
  };

  const toggle = (seq: number) =>
    setSelected((s) => {
      const n = new Set(s);
      if (n.has(seq)) n.delete(seq);
      else n.add(seq);
      return n;
    });

  const running = task?.state === 'running';
  const messages = data?.messages ?? [];
  const allSelected = messages.length > 0 && messages.every((m) => selected.has(m.seq));
  return (
    <section>
      {header}
      {error && <ErrorNote error={error} what="Could not read the dead-letter station" />}
      {loading && !data ? (
        <Loading />
      ) : (
        <>
          <div class="actions" role="group" aria-label="Dead-letter actions">
            <label>
              Resend to{' '}
              <select value={target} onChange={(e) => setTarget(e.currentTarget.value as 'group' | 'station')}>
                <option value="group">the group that gave up (new delivery attempt)</option>
                <option value="station">the station, as a new message</option>
              </select>
            </label>
            <button type="button" class="primary" disabled={!selected.size || running} onClick={() => resend([...selected])}>
              Resend selected ({selected.size})
            </button>
            <button type="button" disabled={!messages.length || running} onClick={() => resend('all')}>
              Resend all
            </button>
            <button type="button" class="danger" disabled={!selected.size || running} onClick={() => drop([...selected])}>
              Drop selected
            </button>
            <button type="button" class="danger" disabled={!messages.length || running} onClick={() => setPurging(true)}>
              Drop all
            </button>
          </div>
          <p class="muted small">
            A message without a group (a schema violation) or whose original is gone is re-published into the station;
            it is validated against the station's schema again. What cannot be resent stays here, with the reason below.
          </p>
          {task && <ResendProgress task={task} />}
          {note && (
            <p role="status" class="ok">
              {note}
            </p>
          )}
          {actionError && <ErrorNote error={actionError} />}
          {messages.length === 0 ? (
            <p class="muted" data-testid="no-dead-letters">
              No dead letters. Messages that fail their schema, exceed max deliveries or are terminated land here, as the
              station's dead-letter policy says.
            </p>
          ) : (
            <div class="table-wrap">
              <table data-testid="dls-table">
                <thead>
                  <tr>
                    <th scope="col">
                      <input
                        type="checkbox"
                        checked={allSelected}
                        onChange={() => setSelected(allSelected ? new Set() : new Set(messages.map((m) => m.seq)))}
                        aria-label="Select every dead letter"
                      />
                    </th>
                    <th scope="col" class="num">
                      Seq
                    </th>
                    <th scope="col">Reason</th>
                    <th scope="col">Original subject</th>
                    <th scope="col">Received</th>
                    <th scope="col">Payload</th>
                  </tr>
                </thead>
                <tbody>
                  {messages.map((m) => {
                    const { reason, details } = reasonOf(m);
                    const h = Object.fromEntries(headerEntries(m.headers).map(([k, v]) => [k.toLowerCase(), v]));
                    return (
                      <tr key={m.seq}>
                        <td>
                          <input
                            type="checkbox"
                            checked={selected.has(m.seq)}
                            onChange={() => toggle(m.seq)}
                            aria-label={`Select dead letter ${m.seq}`}
                          />
                        </td>
                        <td class="num">
                          <button type="button" class="link" onClick={() => setOpen(m)} aria-label={`Open dead letter ${m.seq}`}>
                            {m.seq}
                          </button>
                        </td>
                        <td data-testid="dls-reason">
                          <strong>{REASONS[reason] ?? reason}</strong>
                          {details.length > 0 && (
                            <dl class="facts small">
                              {details.map(([k, v]) => (
                                <>
                                  <dt>{k}</dt>
                                  <dd>{v}</dd>
                                </>
                              ))}
                            </dl>
                          )}
                        </td>
                        <td>
                          <code>{h['junction-dls-subject'] ?? m.subject}</code>
                        </td>
                        <td>{time(h['junction-dls-timestamp'] ?? m.time)}</td>
                        <td class="preview">{payloadPreview(m)}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
          {open && <MessageView message={open} onClose={() => setOpen(undefined)} />}
          {purging && (
            <Confirm
              title={`Drop every dead letter of ${station}?`}
              confirmLabel="Drop all"
              danger
              onConfirm={async () => {
                const r = await request<{ purged: number }>('DELETE', `${base}/messages`);
                setNote(`Dropped ${num(r.purged)} dead letters.`);
                setSelected(new Set());
                reload();
              }}
              onClose={() => setPurging(false)}
            >
              <p>They are removed from {DLS_PREFIX + station} and cannot be resent afterwards.</p>
            </Confirm>
          )}
        </>
      )}
    </section>
  );
}

function ResendProgress({ task }: { task: ResendTask }) {
  const done = task.redelivered + task.republished + task.failed;
  return (
    <section class="panel" role="status" aria-label="Resend progress" data-testid="resend-progress">
      <p>
        {task.state === 'running' ? 'Resending…' : 'Resend finished:'}{' '}
        <progress max={Math.max(1, task.total)} value={task.state === 'done' ? Math.max(1, task.total) : done} />{' '}
        <span data-testid="resend-counts">
          {done}/{task.total} · {task.redelivered} redelivered · {task.republished} republished · {task.failed} failed
        </span>
      </p>
      {task.errors.length > 0 && (
        <ul class="error small">
          {task.errors.map((e) => (
            <li key={e}>{e}</li>
          ))}
        </ul>
      )}
    </section>
  );
}
