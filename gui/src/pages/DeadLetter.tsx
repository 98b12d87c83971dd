// A station's dead-letter station: messages with their reasons, resend, drop.
// Written against the API of the station-semantics work (docs of issue 6):
//   GET  /v1/stations/{s}/dls/messages?from_seq=&limit=  → {messages:[…], next_seq}
//   POST /v1/stations/{s}/dls/resend  {"ids":[seq…]} or {"all":true}
//   DELETE /v1/stations/$dls.{s}/messages/{seq}   (the DLS is a normal station)
// Until the broker serves them, the page says so.
import { useState } from 'preact/hooks';
import { ApiError, get, request, type Browse, type StoredMessage } from '../api';
import { MessageView } from '../components/Payload';
import { ErrorNote, Loading, NotProvided, isMissing } from '../components/Status';
import { headerEntries, payloadPreview, time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { Link, stationHref } from '../router';

const enc = encodeURIComponent;

function reasonOf(m: StoredMessage): { reason: string; detail: string } {
  const h = headerEntries(m.headers);
  const find = (re: RegExp) => h.find(([k]) => re.test(k))?.[1];
  const reason = find(/^junction-dls-reason$/i) ?? 'unknown';
  const detail = h
    .filter(([k]) => /^junction-dls-/i.test(k) && !/^junction-dls-reason$/i.test(k))
    .map(([k, v]) => `${k.replace(/^junction-dls-/i, '')}: ${v}`)
    .join(' · ');
  return { reason, detail };
}

export function DeadLetter({ station: encoded }: { station: string }) {
  const station = decodeURIComponent(encoded);
  useTitle(`${station} dead letters`);
  const route = `/v1/stations/${enc(station)}/dls/messages`;
  const { data, error, loading, reload } = useLoad(() => get<Browse>(`${route}?limit=200`), [station], 5000);
  const [selected, setSelected] = useState<Set<number>>(new Set());
  const [open, setOpen] = useState<StoredMessage>();
  const [progress, setProgress] = useState<{ done: number; total: number; failed: number }>();
  const [actionError, setActionError] = useState<ApiError>();
  const [note, setNote] = useState<string>();

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
        <NotProvided feature="dead-letter stations" route={`GET ${route}`} />
      </section>
    );
  }

  const resend = async (ids: number[] | 'all') => {
    setActionError(undefined);
    setNote(undefined);
    try {
      if (ids === 'all') {
        setProgress({ done: 0, total: data?.messages.length ?? 0, failed: 0 });
        const answer = await request<Record<string, unknown>>('POST', `/v1/stations/${enc(station)}/dls/resend`, {
          body: { all: true },
        });
        setNote(`The broker accepted the resend of all: ${JSON.stringify(answer ?? {})}`);
        setProgress(undefined);
      } else {
        // One request per message, so progress is real.
        let failed = 0;
        for (let i = 0; i < ids.length; i++) {
          setProgress({ done: i, total: ids.length, failed });
          try {
            await request('POST', `/v1/stations/${enc(station)}/dls/resend`, { body: { ids: [ids[i]] } });
          } catch (e) {
            failed++;
            setActionError(e as ApiError);
          }
        }
        setProgress(undefined);
        setNote(`Resent ${ids.length - failed} of ${ids.length}.`);
      }
      setSelected(new Set());
      reload();
    } catch (e) {
      setProgress(undefined);
      setActionError(e as ApiError);
    }
  };

  const drop = async (ids: number[]) => {
    setActionError(undefined);
    for (const id of ids) {
      try {
        await request('DELETE', `/v1/stations/${enc(`$dls.${station}`)}/messages/${id}`);
      } catch (e) {
        setActionError(e as ApiError);
        break;
      }
    }
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

  const messages = data?.messages ?? [];
  return (
    <section>
      {header}
      {error && <ErrorNote error={error} what="Could not read the dead-letter station" />}
      {loading && !data ? (
        <Loading />
      ) : (
        <>
          <div class="actions" role="group" aria-label="Dead-letter actions">
            <button type="button" class="primary" disabled={!selected.size || !!progress} onClick={() => resend([...selected])}>
              Resend selected ({selected.size})
            </button>
            <button type="button" disabled={!messages.length || !!progress} onClick={() => resend('all')}>
              Resend all
            </button>
            <button type="button" class="danger" disabled={!selected.size || !!progress} onClick={() => drop([...selected])}>
              Drop selected
            </button>
          </div>
          {progress && (
            <p role="status">
              Resending… <progress max={progress.total} value={progress.done} /> {progress.done}/{progress.total}
            </p>
          )}
          {note && (
            <p role="status" class="ok">
              {note}
            </p>
          )}
          {actionError && <ErrorNote error={actionError} />}
          {messages.length === 0 ? (
            <p class="muted">No dead letters. Messages that fail their schema, exceed max deliveries or are terminated land here.</p>
          ) : (
            <div class="table-wrap">
              <table data-testid="dls-table">
                <thead>
                  <tr>
                    <th scope="col">
                      <span class="sr-only">Select</span>
                    </th>
                    <th scope="col" class="num">
                      Seq
                    </th>
                    <th scope="col">Reason</th>
                    <th scope="col">Subject</th>
                    <th scope="col">Stored</th>
                    <th scope="col">Payload</th>
                  </tr>
                </thead>
                <tbody>
                  {messages.map((m) => {
                    const { reason, detail } = reasonOf(m);
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
                          <button type="button" class="link" onClick={() => setOpen(m)}>
                            {m.seq}
                          </button>
                        </td>
                        <td>
                          <strong>{reason}</strong>
                          {detail && <div class="muted small">{detail}</div>}
                        </td>
                        <td>
                          <code>{m.subject}</code>
                        </td>
                        <td>{time(m.time)}</td>
                        <td class="preview">{payloadPreview(m)}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
          {open && <MessageView message={open} onClose={() => setOpen(undefined)} />}
        </>
      )}
    </section>
  );
}
