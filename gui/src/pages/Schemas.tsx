// Schemas (docs/schemas.md): list with versions, create, new version, roll back,
// attach to a station, diff two versions, delete.
//   GET  /v1/schemas → {schemas:[{name, type, active_version, created, stations, versions}]}
//   GET  /v1/schemas/{name}
//   POST /v1/schemas {name, type:"json", definition}
//   POST /v1/schemas/{name}/versions {definition}        (the new version becomes active)
//   POST /v1/schemas/{name}/rollback {version}           (makes an older version active)
//   DELETE /v1/schemas/{name}                            (409 schema_in_use while attached)
//   attach: PUT /v1/stations/{s} with the station's definition plus schema (and schema_version).
import { useState } from 'preact/hooks';
import { api, ApiError, request, type Schema } from '../api';
import { Confirm } from '../components/Confirm';
import { ErrorNote, Loading, NotProvided, isMissing } from '../components/Status';
import { time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { Link, setQuery, stationHref, useLocation } from '../router';

const enc = encodeURIComponent;

export function Schemas() {
  useTitle('Schemas');
  const { query } = useLocation();
  const open = query.get('schema');
  const list = useLoad(() => api.schemas(), []);
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
            setQuery({ schema: name }, false);
          }}
        />
      )}
      {list.error && <ErrorNote error={list.error} what="Could not list schemas" />}
      {!list.data ? (
        <Loading />
      ) : list.data.length === 0 ? (
        <p class="muted" data-testid="no-schemas">
          No schemas yet. A station with a schema refuses, from every protocol, the publishes that do not match it.
        </p>
      ) : (
        <table data-testid="schemas-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col" class="num">
                Active version
              </th>
              <th scope="col" class="num">
                Versions
              </th>
              <th scope="col">Stations</th>
              <th scope="col">Created</th>
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
                <td>{s.type}</td>
                <td class="num">v{s.active_version}</td>
                <td class="num">{s.versions.length}</td>
                <td>
                  {s.stations.length ? (
                    s.stations.map((st, i) => (
                      <>
                        {i > 0 && ', '}
                        <Link href={stationHref(st)}>{st}</Link>
                      </>
                    ))
                  ) : (
                    <span class="muted">—</span>
                  )}
                </td>
                <td>{time(s.created)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {open && <SchemaDetail key={open} name={open} onChanged={list.reload} />}
    </section>
  );
}

function SchemaDetail({ name, onChanged }: { name: string; onChanged: () => void }) {
  const { data, error, reload } = useLoad(() => api.schema(name), [name]);
  const [adding, setAdding] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [left, setLeft] = useState<number>();
  const [right, setRight] = useState<number>();
  const [actionError, setActionError] = useState<ApiError>();
  const [note, setNote] = useState<string>();
  if (error) return <ErrorNote error={error} what={`Schema ${name}`} />;
  if (!data) return <Loading what={`Loading ${name}`} />;
  const versions = [...data.versions].sort((a, b) => b.version - a.version);
  const active = data.active_version;
  const newest = versions[0];
  const a = versions.find((v) => v.version === (left ?? versions[1]?.version));
  const b = versions.find((v) => v.version === (right ?? newest?.version));
  const changed = (s?: Schema) => {
    reload();
    onChanged();
    return s;
  };
  const activate = async (version: number) => {
    setActionError(undefined);
    setNote(undefined);
    try {
      await request<Schema>('POST', `/v1/schemas/${enc(name)}/rollback`, { body: { version } });
      changed();
      setNote(`v${version} is now the active version.`);
    } catch (e) {
      setActionError(e as ApiError);
    }
  };
  return (
    <section class="panel" aria-labelledby="schema-title" data-testid="schema-detail">
      <div class="row">
        <h2 id="schema-title">
          {name} <span class="muted">({data.type}, active v{active})</span>
        </h2>
        <div class="actions">
          <button type="button" onClick={() => setAdding(true)} disabled={adding}>
            New version
          </button>
          <button type="button" class="danger" onClick={() => setDeleting(true)}>
            Delete schema
          </button>
        </div>
      </div>
      {adding && (
        <DefinitionForm
          title={`New version of ${name}`}
          initial={newest ? JSON.stringify(newest.definition, null, 2) : undefined}
          onCancel={() => setAdding(false)}
          onSubmit={async (_n, definition) => {
            const s = await request<Schema>('POST', `/v1/schemas/${enc(name)}/versions`, { body: { definition } });
            setAdding(false);
            changed();
            setNote(`Added v${s.active_version}; it is now the active version.`);
          }}
        />
      )}
      {actionError && <ErrorNote error={actionError} />}
      {note && (
        <p role="status" class="ok">
          {note}
        </p>
      )}
      <p class="muted small">
        Stations using it:{' '}
        {data.stations.length
          ? data.stations.map((st, i) => (
              <>
                {i > 0 && ', '}
                <Link href={stationHref(st)}>{st}</Link>
              </>
            ))
          : 'none'}
        . Stations that pin a version ignore the active one.
      </p>
      <table class="compact" data-testid="schema-versions">
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
              <td>
                v{v.version}
                {v.version === active && <> <span class="badge">active</span></>}
              </td>
              <td>{time(v.created)}</td>
              <td>
                {v.version !== active && (
                  <button type="button" onClick={() => activate(v.version)}>
                    {v.version < active ? 'Roll back' : 'Roll forward'} to v{v.version}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <Attach schema={data} onAttached={() => changed()} />
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
      {versions.length === 1 && newest && (
        <section aria-labelledby="def-title">
          <h3 id="def-title">Definition</h3>
          <pre class="payload" tabIndex={0}>
            {JSON.stringify(newest.definition, null, 2)}
          </pre>
        </section>
      )}
      {deleting && (
        <Confirm
          title={`Delete schema ${name}?`}
          confirmLabel="Delete schema"
          danger
          onConfirm={async () => {
            await request('DELETE', `/v1/schemas/${enc(name)}`);
            onChanged();
            setQuery({ schema: null }, false);
          }}
          onClose={() => setDeleting(false)}
        >
          <p>
            Every version goes. The broker refuses while a station uses it
            {data.stations.length ? ` (now: ${data.stations.join(', ')})` : ''}.
          </p>
        </Confirm>
      )}
    </section>
  );
}

function Attach({ schema, onAttached }: { schema: Schema; onAttached: () => void }) {
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
    // PUT replaces the whole definition: send the station's own, with the schema.
    const def = api.definitionOf(s);
    def.schema = schema.name;
    def.schema_version = version ? Number(version) : null;
    try {
      await api.updateStation(station, def);
      setDone(`Attached ${schema.name}${version ? ` (pinned to v${version})` : ' (active version)'} to ${station}.`);
      stations.reload();
      onAttached();
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
                  {s.schema ? ` (now ${s.schema}${s.schema_version ? ` v${s.schema_version}` : ''})` : ''}
                </option>
              ))}
          </select>
        </label>
        <label>
          Version
          <select value={version} onChange={(e) => setVersion(e.currentTarget.value)}>
            <option value="">follow the active version</option>
            {schema.versions.map((v) => (
              <option key={v.version} value={v.version}>
                pinned to v{v.version}
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
