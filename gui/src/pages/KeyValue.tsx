// Key-value buckets (docs/http.md#key-value-buckets): the buckets NATS clients
// make (`js.create_key_value`: a bucket `b` is the station `KV_b`), a bucket's
// keys, a key's value and history; put and delete keys.
//   GET    /v1/stations                       (buckets: stations named KV_…)
//   GET    /v1/kv/{bucket}                    → {bucket, keys}
//   GET    /v1/kv/{bucket}/{key}              → {value, value_base64, revision, created}
//                                               (404 key_not_found: deleted or never put)
//   GET    /v1/kv/{bucket}/{key}/history      → {entries:[{revision, operation, value, created}]}
//   PUT    /v1/kv/{bucket}/{key}              (body: the value) → {revision}
//   DELETE /v1/kv/{bucket}/{key}              (a delete marker)
import { useState } from 'preact/hooks';
import { api, ApiError, request } from '../api';
import { ErrorNote, Loading, NotProvided, isMissing } from '../components/Status';
import { time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { Link, setQuery, stationHref, useLocation } from '../router';

const enc = encodeURIComponent;
const KV_PREFIX = 'KV_';

interface KvKeys {
  bucket: string;
  keys: string[];
}

interface KvEntry {
  bucket: string;
  key: string;
  value: string | null;
  value_base64: string;
  revision: number;
  created: string;
}

interface KvRevision {
  revision: number;
  operation: 'PUT' | 'DEL' | 'PURGE' | string;
  value: string | null;
  value_base64: string;
  created: string;
}

const shown = (value: string | null, base64: string) =>
  value !== null ? value : `(${Math.floor((base64.length * 3) / 4)} bytes, not UTF-8)`;

export function KeyValue() {
  useTitle('Key-value');
  const { query } = useLocation();
  const bucket = query.get('bucket');
  const key = query.get('key');
  const buckets = useLoad(
    () => api.stations().then((all) => all.filter((s) => s.name.startsWith(KV_PREFIX))),
    [],
    5000,
  );
  return (
    <section>
      <h1 tabIndex={-1}>Key-value</h1>
      {buckets.error && <ErrorNote error={buckets.error} what="Could not list the buckets" />}
      {!buckets.data ? (
        !buckets.error && <Loading />
      ) : buckets.data.length === 0 ? (
        <p class="muted" data-testid="no-buckets">
          No key-value buckets yet. A NATS client makes one with <code>js.create_key_value</code>; it is the station{' '}
          <code>KV_&lt;bucket&gt;</code>.
        </p>
      ) : (
        <table data-testid="buckets-table">
          <thead>
            <tr>
              <th scope="col">Bucket</th>
              <th scope="col">Station</th>
              <th scope="col" class="num">
                Subjects
              </th>
              <th scope="col" class="num">
                Revisions kept
              </th>
            </tr>
          </thead>
          <tbody>
            {buckets.data.map((s) => {
              const name = s.name.slice(KV_PREFIX.length);
              return (
                <tr key={s.name} aria-selected={bucket === name}>
                  <th scope="row">
                    <button type="button" class="link" onClick={() => setQuery({ bucket: name, key: null }, false)}>
                      {name}
                    </button>
                  </th>
                  <td>
                    <Link href={stationHref(s.name)}>{s.name}</Link>
                  </td>
                  <td class="num">{s.state.num_subjects ?? '—'}</td>
                  <td class="num">{s.state.messages}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {bucket && <Bucket key={bucket} bucket={bucket} selected={key} />}
    </section>
  );
}

function Bucket({ bucket, selected }: { bucket: string; selected: string | null }) {
  const keys = useLoad(() => request<KvKeys>('GET', `/v1/kv/${enc(bucket)}`), [bucket], 3000);
  const [putKey, setPutKey] = useState('');
  const [putValue, setPutValue] = useState('');
  const [error, setError] = useState<ApiError>();
  const [note, setNote] = useState<string>();
  // Bumped by a put, so the key's value and history are read again at once.
  const [puts, setPuts] = useState(0);
  if (isMissing(keys.error)) return <NotProvided feature="key-value buckets" route="GET /v1/kv/{bucket}" />;
  const put = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setNote(undefined);
    try {
      const r = await request<{ revision: number }>('PUT', `/v1/kv/${enc(bucket)}/${enc(putKey)}`, {
        raw: putValue,
        headers: { 'Content-Type': 'application/octet-stream' },
      });
      setNote(`Put ${putKey} (revision ${r.revision}).`);
      setPuts((n) => n + 1);
      keys.reload();
      setQuery({ key: putKey }, false);
    } catch (err) {
      setError(err as ApiError);
    }
  };
  return (
    <section class="panel" aria-labelledby="bucket-title" data-testid="bucket-detail">
      <h2 id="bucket-title">Bucket {bucket}</h2>
      {keys.error && <ErrorNote error={keys.error} what={`Bucket ${bucket}`} />}
      {!keys.data ? (
        !keys.error && <Loading what="Loading keys" />
      ) : keys.data.keys.length === 0 ? (
        <p class="muted" data-testid="no-keys">
          No key has a value.
        </p>
      ) : (
        <ul class="keys" aria-label="Keys" data-testid="keys-list">
          {keys.data.keys.map((k) => (
            <li key={k}>
              <button
                type="button"
                class="link"
                aria-current={selected === k ? 'true' : undefined}
                onClick={() => setQuery({ key: k }, false)}
              >
                {k}
              </button>
            </li>
          ))}
        </ul>
      )}
      <form class="form" onSubmit={put} aria-label="Put a key">
        <h3>Put a key</h3>
        <div class="filters">
          <label>
            Key
            <input value={putKey} onInput={(e) => setPutKey(e.currentTarget.value)} required />
          </label>
          <label>
            Value
            <input value={putValue} onInput={(e) => setPutValue(e.currentTarget.value)} />
          </label>
          <button type="submit" class="primary" disabled={!putKey}>
            Put
          </button>
        </div>
        {error && <ErrorNote error={error} what="The broker refused" />}
        {note && (
          <p role="status" class="ok">
            {note}
          </p>
        )}
      </form>
      {selected && (
        <Key key={`${bucket}/${selected}/${puts}`} bucket={bucket} name={selected} onChanged={keys.reload} />
      )}
    </section>
  );
}

function Key({ bucket, name, onChanged }: { bucket: string; name: string; onChanged: () => void }) {
  const path = `/v1/kv/${enc(bucket)}/${enc(name)}`;
  const entry = useLoad(
    () =>
      request<KvEntry>('GET', path).catch((e: ApiError) => {
        if (e.status === 404 && e.code === 'key_not_found') return null;
        throw e;
      }),
    [path],
    3000,
  );
  const history = useLoad(() => request<{ entries: KvRevision[] }>('GET', `${path}/history`), [path], 3000);
  const [error, setError] = useState<ApiError>();
  const remove = async () => {
    setError(undefined);
    try {
      await request<void>('DELETE', path);
      entry.reload();
      history.reload();
      onChanged();
    } catch (e) {
      setError(e as ApiError);
    }
  };
  return (
    <section class="panel" aria-labelledby="key-title" data-testid="key-detail">
      <div class="row">
        <h3 id="key-title">Key {name}</h3>
        <button type="button" class="danger" onClick={remove} disabled={!entry.data}>
          Delete key
        </button>
      </div>
      {error && <ErrorNote error={error} what="The broker refused" />}
      {entry.error && <ErrorNote error={entry.error} what={`Key ${name}`} />}
      {entry.data === undefined ? (
        !entry.error && <Loading what="Loading value" />
      ) : entry.data === null ? (
        <p class="muted" data-testid="key-deleted">
          No value: deleted, purged or never put.
        </p>
      ) : (
        <dl class="facts" data-testid="key-value">
          <dt>Value</dt>
          <dd>
            <code data-testid="current-value">{shown(entry.data.value, entry.data.value_base64)}</code>
          </dd>
          <dt>Revision</dt>
          <dd data-testid="current-revision">{entry.data.revision}</dd>
          <dt>Put</dt>
          <dd>{time(entry.data.created)}</dd>
        </dl>
      )}
      <h4>History</h4>
      {history.error && <ErrorNote error={history.error} what="History" />}
      {history.data && (
        <table data-testid="history-table">
          <thead>
            <tr>
              <th scope="col" class="num">
                Revision
              </th>
              <th scope="col">Operation</th>
              <th scope="col">Value</th>
              <th scope="col">When</th>
            </tr>
          </thead>
          <tbody>
            {[...history.data.entries].reverse().map((r) => (
              <tr key={r.revision}>
                <td class="num">{r.revision}</td>
                <td>{r.operation}</td>
                <td>{r.operation === 'PUT' ? <code>{shown(r.value, r.value_base64)}</code> : <span class="muted">—</span>}</td>
                <td>{time(r.created)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
