// Schemas: list with versions, create, new version, roll back, attach, diff.
// Written against the API of the station-semantics work (issue 6):
//   GET /v1/schemas → {schemas:[{name, type, versions|latest_version…}]}
//   GET /v1/schemas/{name} → {name, type, versions:[{version, definition, created}]}
//   POST /v1/schemas {name, type:"json", definition}
//   POST /v1/schemas/{name}/versions {definition}
//   a station is attached with PUT /v1/stations/{s} carrying "schema" (and "schema_version").
// Roll back publishes an older definition as the newest version. Until the broker
// serves these routes the page says so.
import { useState } from 'preact/hooks';
import { api, ApiError, get, request, type Station } from '../api';
import { ErrorNote, Loading, NotProvided, isMissing } from '../components/Status';
import { time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { setQuery, useLocation } from '../router';

interface SchemaVersion {
  version: number;
  definition: unknown;
  created?: string;
}
interface Schema {
  name: string;
  type?: string;
  versions?: SchemaVersion[];
  latest_version?: number;
  version?: number;
  stations?: string[];
}

const enc = encodeURIComponent;
const latest = (s: Schema) =>
  s.latest_version ?? s.version ?? (s.versions?.length ? Math.max(...s.versions.map((v) => v.version)) : undefined);

export function Schemas() {
  useTitle('Schemas');
  const { query } = useLocation();
  const open = query.get('schema');
  const list = useLoad(
    () => get<{ schemas: Schema[] } | Schema[]>('/v1/schemas').then((r) => (Array.isArray(r) ? r : r.schemas ?? [])),
    [],
  );
  const [creating, setCreating] = useState(false);
  if (isMissing(list.error)) {
    return (
      <section>
        <h1 tabIndex={-1}>Schemas</h1>
        <NotProvided feature="schemas" route="GET /v1/schemas" />
      </section>
    );
  }
  return (
    <section>
      <div class="row">
        <h1 tabIndex={-1}>Schemas</h1>
        <button type="button" class="primary" onClick={() => setCreating(true)} disabled={creating}>
          Create schema
        </button>
      </div>
      {creating && (
        <DefinitionForm
          title="Create a JSON Schema"
          withName
          onCancel={() => setCreating(false)}
          onSubmit={async (name, definition) => {
            await request('POST', '/v1/schemas', { body: { name, type: 'json', definition } });
            setCreating(false);
            list.reload();
          }}
        />
      )}
      {list.error && <ErrorNote error={list.error} what="Could not list schemas" />}
      {!list.data ? (
        <Loading />
      ) : list.data.length === 0 ? (
        <p class="muted">No schemas yet.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col" class="num">
                Latest version
              </th>
              <th scope="col">Stations</th>
            </tr>
          </thead>
          <tbody>
            {list.data.map((s) => (
              <tr key={s.name} aria-selected={open === s.name}>
                <th scope="row">
                  <button type="button" class="link" onClick={() => setQuery({ schema: s.name }, false)}>
                    {s.name}
                  </button>
                </th>
                <td>{s.type ?? 'json'}</td>
                <td class="num">{latest(s) ?? '—'}</td>
                <td>{s.stations?.join(', ') || <span class="muted">—</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {open && <SchemaDetail name={open} onChanged={list.reload} />}
    </section>
  );
}

function SchemaDetail({ name, onChanged }: { name: string; onChanged: () => void }) {
  const { data, error, reload } = useLoad(() => get<Schema>(`/v1/schemas/${enc(name)}`), [name]);
  const [adding, setAdding] = useState(false);
  const [left, setLeft] = useState<number>();
  const [right, setRight] = useState<number>();
  const [actionError, setActionError] = useState<ApiError>();
  const [note, setNote] = useState<string>();
  if (error) return <ErrorNote error={error} what={`Schema ${name}`} />;
  if (!data) return <Loading what={`Loading ${name}`} />;
  const versions = [...(data.versions ?? [])].sort((a, b) => b.version - a.version);
  const newest = versions[0];
  const a = versions.find((v) => v.version === (left ?? versions[1]?.version));
  const b = versions.find((v) => v.version === (right ?? newest?.version));
  const addVersion = async (definition: unknown) => {
    await request('POST', `/v1/schemas/${enc(name)}/versions`, { body: { definition } });
    reload();
    onChanged();
  };
  return (
    <section class="panel" aria-labelledby="schema-title">
      <div class="row">
        <h2 id="schema-title">
          {name} <span class="muted">({data.type ?? 'json'})</span>
        </h2>
        <button type="button" onClick={() => setAdding(true)} disabled={adding}>
          New version
        </button>
      </div>
      {adding && (
        <DefinitionForm
          title={`New version of ${name}`}
          initial={newest ? JSON.stringify(newest.definition, null, 2) : ''}
          onCancel={() => setAdding(false)}
          onSubmit={async (_n, definition) => {
            await addVersion(definition);
            setAdding(false);
          }}
        />
      )}
      {actionError && <ErrorNote error={actionError} />}
      {note && (
        <p role="status" class="ok">
          {note}
        </p>
      )}
      <table class="compact">
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Created</th>
            <th scope="col">
              <span class="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr key={v.version}>
              <td>v{v.version}</td>
              <td>{time(v.created)}</td>
              <td>
                {v !== newest && (
                  <button
                    type="button"
                    onClick={async () => {
                      setActionError(undefined);
                      try {
                        await addVersion(v.definition);
                        setNote(`Rolled back: v${v.version}'s definition is now the newest version.`);
                      } catch (e) {
                        setActionError(e as ApiError);
                      }
                    }}
                  >
                    Roll back to v{v.version}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <Attach schema={name} versions={versions.map((v) => v.version)} />
      {versions.length >= 2 && a && b && (
        <section aria-labelledby="diff-title">
          <h3 id="diff-title">Compare versions</h3>
          <div class="filters">
            <label>
              From
              <select value={a.version} onChange={(e) => setLeft(Number(e.currentTarget.value))}>
                {versions.map((v) => (
                  <option key={v.version} value={v.version}>
                    v{v.version}
                  </option>
                ))}
              </select>
            </label>
            <label>
              To
              <select value={b.version} onChange={(e) => setRight(Number(e.currentTarget.value))}>
                {versions.map((v) => (
                  <option key={v.version} value={v.version}>
                    v{v.version}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <Diff a={JSON.stringify(a.definition, null, 2)} b={JSON.stringify(b.definition, null, 2)} />
        </section>
      )}
    </section>
  );
}

function Attach({ schema, versions }: { schema: string; versions: number[] }) {
  const stations = useLoad(() => api.stations(), []);
  const [station, setStation] = useState('');
  const [version, setVersion] = useState('');
  const [error, setError] = useState<ApiError>();
  const [done, setDone] = useState<string>();
  const attach = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setDone(undefined);
    const s = stations.data?.find((x) => x.name === station);
    if (!s) return;
    const def: Partial<Station> & Record<string, unknown> = { ...s, schema };
    delete def.name;
    delete def.created;
    delete def.state;
    if (version) def.schema_version = Number(version);
    else delete def.schema_version;
    try {
      await api.updateStation(station, def);
      setDone(`Attached ${schema}${version ? ` v${version}` : ''} to ${station}.`);
    } catch (err) {
      setError(err as ApiError);
    }
  };
  return (
    <form class="form" onSubmit={attach} aria-label="Attach to a station">
      <h3>Attach to a station</h3>
      <div class="filters">
        <label>
          Station
          <select value={station} onChange={(e) => setStation(e.currentTarget.value)} required>
            <option value="">choose…</option>
            {(stations.data ?? [])
              .filter((s) => !s.name.startsWith('$'))
              .map((s) => (
                <option key={s.name} value={s.name}>
                  {s.name}
                  {s.schema ? ` (now ${s.schema})` : ''}
                </option>
              ))}
          </select>
        </label>
        <label>
          Version
          <select value={version} onChange={(e) => setVersion(e.currentTarget.value)}>
            <option value="">always the newest</option>
            {versions.map((v) => (
              <option key={v} value={v}>
                pinned to v{v}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" disabled={!station}>
          Attach
        </button>
      </div>
      {error && <ErrorNote error={error} what="The broker refused" />}
      {done && (
        <p role="status" class="ok">
          {done}
        </p>
      )}
    </form>
  );
}

function DefinitionForm({
  title,
  withName,
  initial = '{\n  "type": "object",\n  "properties": {}\n}',
  onSubmit,
  onCancel,
}: {
  title: string;
  withName?: boolean;
  initial?: string;
  onSubmit: (name: string, definition: unknown) => Promise<void>;
  onCancel: () => void;
}) {
  const [name, setName] = useState('');
  const [text, setText] = useState(initial);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  let parseError: string | undefined;
  let definition: unknown;
  try {
    definition = JSON.parse(text);
  } catch (e) {
    parseError = `Not JSON: ${(e as Error).message}`;
  }
  return (
    <form
      class="form"
      onSubmit={async (e) => {
        e.preventDefault();
        if (parseError || (withName && !name.trim())) return;
        setBusy(true);
        setError(undefined);
        try {
          await onSubmit(name.trim(), definition);
        } catch (err) {
          setError((err as Error).message);
        } finally {
          setBusy(false);
        }
      }}
    >
      <h3>{title}</h3>
      {withName && (
        <label>
          Name
          <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
      )}
      <label>
        JSON Schema
        <textarea class="mono" rows={10} value={text} onInput={(e) => setText(e.currentTarget.value)} aria-invalid={parseError ? true : undefined} />
        {parseError && <small class="field-error">{parseError}</small>}
      </label>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" class="primary" disabled={busy || !!parseError}>
          Save
        </button>
      </div>
    </form>
  );
}

/** A line diff (longest common subsequence) of two texts. */
function Diff({ a, b }: { a: string; b: string }) {
  const x = a.split('\n');
  const y = b.split('\n');
  const n = x.length;
  const m = y.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--) lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out: [' ' | '-' | '+', string][] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) {
      out.push([' ', x[i++]]);
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push(['-', x[i++]]);
    else out.push(['+', y[j++]]);
  }
  while (i < n) out.push(['-', x[i++]]);
  while (j < m) out.push(['+', y[j++]]);
  return (
    <pre class="diff" tabIndex={0} aria-label="Differences">
      {out.map(([k, line], idx) => (
        <div key={idx} class={k === '-' ? 'del' : k === '+' ? 'ins' : undefined}>
          {k === ' ' ? '  ' : `${k} `}
          {line}
        </div>
      ))}
    </pre>
  );
}
