// Every station: search, sort, create, edit, purge, delete.
import { useMemo, useRef, useState } from 'preact/hooks';
import { api, type Station } from '../api';
import { Confirm } from '../components/Confirm';
import { StationForm } from '../components/StationForm';
import { SubjectChips } from '../components/Subjects';
import { ErrorNote, Loading } from '../components/Status';
import { bytes, duration, limit, num, rate } from '../format';
import { useLoad, useTitle } from '../hooks';
import { parseMetrics } from '../metrics';
import { Link, navigate, setQuery, stationHref, useLocation } from '../router';

interface Row {
  station: Station;
  rate: number;
  lag: number;
  dls: number | null;
}

type SortKey = 'name' | 'messages' | 'bytes' | 'rate' | 'groups' | 'lag' | 'dls';

const EVERY_MS = 3000;

export function Stations() {
  useTitle('Stations');
  const { query } = useLocation();
  const search = query.get('q') ?? '';
  const sort = (query.get('sort') ?? 'name') as SortKey;
  const desc = query.get('dir') === 'desc';
  const creating = query.get('new') === '1';
  const [editing, setEditing] = useState<Station>();
  const [confirm, setConfirm] = useState<{ kind: 'delete' | 'purge'; station: Station }>();
  const lastSeqs = useRef<{ at: number; seqs: Record<string, number> } | undefined>(undefined);

  const { data, error, loading, reload } = useLoad(
    async () => {
      const [stations, text] = await Promise.all([api.stations(), api.metrics().catch(() => '')]);
      const lags: Record<string, number> = {};
      for (const s of parseMetrics(text))
        if (s.name === 'junction_consumer_group_lag') lags[s.labels.station] = (lags[s.labels.station] ?? 0) + s.value;
      const now = Date.now();
      const prev = lastSeqs.current;
      const seqs: Record<string, number> = {};
      stations.forEach((s) => (seqs[s.name] = s.state.last_seq));
      lastSeqs.current = { at: now, seqs };
      const byName = new Map(stations.map((s) => [s.name, s]));
      const dlsCount = (s: Station) =>
        s.dead_letter_station ? (byName.get(s.dead_letter_station)?.state.messages ?? 0) : null;
      return stations
        .filter((s) => !s.name.startsWith('$'))
        .map<Row>((s) => ({
          station: s,
          rate:
            prev && prev.seqs[s.name] !== undefined
              ? Math.max(0, (s.state.last_seq - prev.seqs[s.name]) / Math.max(0.001, (now - prev.at) / 1000))
              : 0,
          lag: lags[s.name] ?? 0,
          dls: dlsCount(s),
        }));
    },
    [],
    EVERY_MS,
  );

  const rows = useMemo(() => {
    const q = search.toLowerCase();
    const list = (data ?? []).filter(
      (r) =>
        !q ||
        r.station.name.toLowerCase().includes(q) ||
        r.station.subjects.some((s) => s.toLowerCase().includes(q)) ||
        (r.station.description ?? '').toLowerCase().includes(q),
    );
    const key = (r: Row): string | number => {
      switch (sort) {
        case 'messages':
          return r.station.state.messages;
        case 'bytes':
          return r.station.state.bytes;
        case 'rate':
          return r.rate;
        case 'groups':
          return r.station.state.groups;
        case 'lag':
          return r.lag;
        case 'dls':
          return r.dls ?? -1;
        default:
          return r.station.name.toLowerCase();
      }
    };
    list.sort((a, b) => {
      const x = key(a);
      const y = key(b);
      const c = x < y ? -1 : x > y ? 1 : 0;
      return desc ? -c : c;
    });
    return list;
  }, [data, search, sort, desc]);

  const header = (k: SortKey, label: string, numeric = true) => {
    const active = sort === k;
    return (
      <th scope="col" class={numeric ? 'num' : undefined} aria-sort={active ? (desc ? 'descending' : 'ascending') : 'none'}>
        <button
          type="button"
          class="sort"
          onClick={() => setQuery({ sort: k, dir: active && !desc ? 'desc' : null })}
        >
          {label}
          <span aria-hidden="true">{active ? (desc ? ' ▼' : ' ▲') : ''}</span>
        </button>
      </th>
    );
  };

  return (
    <section>
      <div class="row">
        <h1 tabIndex={-1}>Stations</h1>
        <button type="button" class="primary" onClick={() => setQuery({ new: '1' }, false)} disabled={creating}>
          Create station
        </button>
      </div>
      {creating && (
        <StationForm
          onCancel={() => setQuery({ new: null })}
          onSaved={(s) => navigate(stationHref(s.name))}
        />
      )}
      {editing && (
        <StationForm
          station={editing}
          onCancel={() => setEditing(undefined)}
          onSaved={() => {
            setEditing(undefined);
            reload();
          }}
        />
      )}
      <label class="search">
        Search
        <input
          type="search"
          value={search}
          placeholder="name, subject or description"
          onInput={(e) => setQuery({ q: e.currentTarget.value || null })}
        />
      </label>
      {error && <ErrorNote error={error} what="Could not list stations" />}
      {loading && !data ? (
        <Loading />
      ) : rows.length === 0 ? (
        <p class="muted" data-testid="no-stations">
          {search ? 'No station matches.' : 'No stations yet. Create one to store messages.'}
        </p>
      ) : (
        <div class="table-wrap">
          <table data-testid="stations-table" class="stations-table">
            <caption class="sr-only">Stations, refreshed every {EVERY_MS / 1000} seconds</caption>
            <thead>
              <tr>
                {header('name', 'Name', false)}
                <th scope="col">Subjects</th>
                {header('messages', 'Messages')}
                {header('bytes', 'Size')}
                {header('rate', 'Rate /s')}
                {header('groups', 'Groups')}
                {header('lag', 'Lag')}
                <th scope="col">Schema</th>
                {header('dls', 'Dead letters')}
                <th scope="col">Retention</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map(({ station: s, rate: r, lag, dls }) => (
                <tr key={s.name}>
                  <th scope="row">
                    <Link href={stationHref(s.name)}>{s.name}</Link>
                    {s.replicas > 1 && (
                      <span class="badge" title={`${s.replicas} replicas`}>
                        R{s.replicas}
                      </span>
                    )}
                    {s.cluster?.under_replicated && (
                      <span class="badge warn" data-testid="under-replicated">
                        under-replicated
                      </span>
                    )}
                    {s.description && (
                      <div class="muted small" title={s.description}>
                        {s.description}
                      </div>
                    )}
                  </th>
                  <td class="subjects-cell">
                    <SubjectChips subjects={s.subjects} max={3} station={s.name} />
                  </td>
                  <td class="num">{num(s.state.messages)}</td>
                  <td class="num">{bytes(s.state.bytes)}</td>
                  <td class="num">{rate(r)}</td>
                  <td class="num">{num(s.state.groups)}</td>
                  <td class="num">{num(lag)}</td>
                  <td class="schema-cell">{s.schema ? <Link href={`/schemas?schema=${encodeURIComponent(s.schema)}`}>{s.schema}</Link> : <span class="muted">none</span>}</td>
                  <td class="num">
                    {dls === null ? <span class="muted">—</span> : <Link href={`${stationHref(s.name)}/dls`}>{num(dls)}</Link>}
                  </td>
                  <td class="small retention-cell">
                    {s.retention.policy}, {duration(s.retention.max_age_ms)}, {limit(s.retention.max_msgs)} msgs,{' '}
                    {s.storage}
                  </td>
                  <td class="actions-cell">
                    <button type="button" onClick={() => setEditing(s)} aria-label={`Edit ${s.name}`}>
                      Edit
                    </button>
                    <button type="button" onClick={() => setConfirm({ kind: 'purge', station: s })} aria-label={`Purge ${s.name}`}>
                      Purge
                    </button>
                    <button
                      type="button"
                      class="danger"
                      onClick={() => setConfirm({ kind: 'delete', station: s })}
                      aria-label={`Delete ${s.name}`}
                    >
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {confirm && (
        <StationConfirm
          kind={confirm.kind}
          station={confirm.station}
          onDone={() => {
            setConfirm(undefined);
            reload();
          }}
        />
      )}
    </section>
  );
}

/** Purge or delete a station, after confirmation. */
export function StationConfirm({
  kind,
  station,
  onDone,
  onDeleted,
}: {
  kind: 'delete' | 'purge';
  station: Station;
  onDone: () => void;
  onDeleted?: () => void;
}) {
  return kind === 'delete' ? (
    <Confirm
      title={`Delete station ${station.name}?`}
      confirmLabel="Delete station"
      typeToConfirm={station.name}
      danger
      onClose={onDone}
      onConfirm={async () => {
        await api.deleteStation(station.name);
        onDeleted?.();
      }}
    >
      <p>
        This deletes the station, its {num(station.state.messages)} messages and its {num(station.state.groups)} consumer
        groups. It cannot be undone.
      </p>
    </Confirm>
  ) : (
    <Confirm
      title={`Purge station ${station.name}?`}
      confirmLabel="Purge all messages"
      danger
      onClose={onDone}
      onConfirm={async () => {
        await api.purgeStation(station.name);
      }}
    >
      <p>
        This removes all {num(station.state.messages)} messages from <strong>{station.name}</strong>; the station and its
        groups stay. It cannot be undone.
      </p>
    </Confirm>
  );
}
