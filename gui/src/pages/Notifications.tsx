// Notifications (docs/gui.md, docs/operations.md): the alarms raised now, the
// system events the broker keeps in each tenant's `$sys_events` station (they
// survive restarts), filtered by kind, severity, station and client, and, for
// the operators, the webhooks that carry events out, with their health, a
// "send test" button and a form to add one.
//   GET    /v1/alarms                              → {alarms:[{name, message}]}
//   GET    /v1/events?limit&kind&severity&station&client → {events:[…]}, newest first
//   GET    /v1/notifications/webhooks              → {webhooks:[…]} (operators only)
//   PUT    /v1/notifications/webhooks/{name}       (201 made, 200 replaced; 409, 422)
//   DELETE /v1/notifications/webhooks/{name}       (204; 404; 409)
//   POST   /v1/notifications/webhooks/{name}/test  → {event_id, status, ok, error}
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, type Severity, type Webhook, type WebhookConfig, type WebhookTest } from '../api';
import { Confirm } from '../components/Confirm';
import { ErrorNote, Loading } from '../components/Status';
import { ago, num, time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { Link, setQuery, stationHref, useLocation } from '../router';

const EVERY_MS = 2000;

/** Every event kind (docs/operations.md), then the alarms' names, which match
 * their alarm events. */
const KINDS = [
  'client_connected',
  'client_disconnected',
  'client_kicked',
  'client_banned',
  'auth_failed',
  'permission_violation',
  'slow_consumer',
  'schema_violation',
  'dead_letter',
  'replica_down',
  'storage_full',
  'storage_full_cleared',
  'alarm_raised',
  'alarm_cleared',
  'config_reloaded',
  'config_reload_failed',
  'webhook_failed',
  'server_started',
  'server_stopping',
];
const ALARMS = ['storage_low', 'storage_full', 'memory_high', 'tls_certificate_expiring'];
const SEVERITIES: Severity[] = ['info', 'warning', 'error', 'critical'];

export function SeverityBadge({ severity }: { severity: Severity }) {
  return (
    <span class={`badge sev-${severity}`} data-severity={severity}>
      {severity}
    </span>
  );
}

export function Notifications({ operator }: { operator: boolean }) {
  useTitle('Notifications');
  return (
    <section>
      <div class="row">
        <h1 tabIndex={-1}>Notifications</h1>
        <p class="muted">Refreshed every {EVERY_MS / 1000} s</p>
      </div>
      <Alarms />
      <Events />
      {operator && <Webhooks />}
    </section>
  );
}

function Alarms() {
  const { data, error } = useLoad(() => api.alarms(), [], EVERY_MS);
  return (
    <section aria-labelledby="alarms-title" data-testid="alarms">
      <h2 id="alarms-title">Active alarms</h2>
      {error && <ErrorNote error={error} what="Could not read the alarms" />}
      {!data ? (
        <Loading />
      ) : data.length === 0 ? (
        <p class="muted">No alarm is raised.</p>
      ) : (
        <ul class="plain alarms">
          {data.map((a) => (
            <li key={a.name} data-alarm={a.name}>
              <span class="badge sev-error">{a.name}</span> {a.message}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Events() {
  const { query } = useLocation();
  const kind = query.get('kind') ?? '';
  const severity = query.get('severity') ?? '';
  const station = query.get('station') ?? '';
  const client = query.get('client') ?? '';
  const { data, error } = useLoad(
    () => api.events({ limit: 500, kind, severity, station, client }),
    [kind, severity, station, client],
    EVERY_MS,
  );
  return (
    <section aria-labelledby="events-title">
      <h2 id="events-title">Events</h2>
      <form class="filters" role="search" aria-label="Filter events" onSubmit={(e) => e.preventDefault()}>
        <label>
          Kind
          <select aria-label="Kind" value={kind} onChange={(e) => setQuery({ kind: e.currentTarget.value || null })}>
            <option value="">all</option>
            <optgroup label="Events">
              {KINDS.map((k) => (
                <option key={k} value={k}>
                  {k.replace(/_/g, ' ')}
                </option>
              ))}
            </optgroup>
            <optgroup label="Alarms">
              {ALARMS.map((k) => (
                <option key={k} value={k}>
                  {k.replace(/_/g, ' ')}
                </option>
              ))}
            </optgroup>
          </select>
        </label>
        <label>
          Severity
          <select
            aria-label="Severity"
            value={severity}
            onChange={(e) => setQuery({ severity: e.currentTarget.value || null })}
          >
            <option value="">any</option>
            {SEVERITIES.map((s) => (
              <option key={s} value={s}>
                {s} or worse
              </option>
            ))}
          </select>
        </label>
        <TextFilter name="station" label="Station" value={station} hint="a station name" />
        <TextFilter name="client" label="Client" value={client} hint="a client id or name" />
      </form>
      {error && <ErrorNote error={error} what="Could not read the system events" />}
      {!data ? (
        <Loading />
      ) : data.length === 0 ? (
        <p class="muted" data-testid="no-events">
          {kind || severity || station || client ? 'No event matches these filters.' : 'No events yet.'}
        </p>
      ) : (
        <div class="table-wrap">
          <table data-testid="events-table">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Severity</th>
                <th scope="col">Kind</th>
                <th scope="col">Client</th>
                <th scope="col">Station</th>
                <th scope="col">What happened</th>
              </tr>
            </thead>
            <tbody>
              {data.map((e) => (
                <tr key={e.id} data-kind={e.kind} data-severity={e.severity}>
                  <td title={time(e.time)}>{ago(e.time)}</td>
                  <td>
                    <SeverityBadge severity={e.severity} />
                  </td>
                  <td>
                    {e.kind.replace(/_/g, ' ')}
                    {e.alarm && <span class="muted small"> ({e.alarm.name})</span>}
                  </td>
                  <td>
                    {e.client_id === null && e.client_name === null ? (
                      <span class="muted">—</span>
                    ) : (
                      <>
                        {e.protocol && <span class={`badge ${e.protocol}`}>{e.protocol}</span>}{' '}
                        {e.client_name ?? <span class="muted">client {e.client_id}</span>}
                      </>
                    )}
                  </td>
                  <td>{e.station ? <Link href={stationHref(e.station)}>{e.station}</Link> : <span class="muted">—</span>}</td>
                  <td>{e.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <p class="muted small">
        Events are kept in each tenant's <code>$sys_events</code> station (about 100,000 events or 7 days, across
        restarts); this shows the last 500 that match.
      </p>
    </section>
  );
}

/**
 * A text filter: it reaches the URL (and the query) when the field is left or
 * Enter is pressed, not on every key; what is being typed survives the page's
 * refreshes.
 */
function TextFilter({ name, label, value, hint }: { name: string; label: string; value: string; hint: string }) {
  const [typed, setTyped] = useState(value);
  useEffect(() => setTyped(value), [value]);
  return (
    <label>
      {label}
      <input
        type="search"
        aria-label={label}
        value={typed}
        placeholder={hint}
        onInput={(e) => setTyped(e.currentTarget.value)}
        onChange={(e) => setQuery({ [name]: e.currentTarget.value.trim() || null })}
      />
    </label>
  );
}

function Webhooks() {
  const list = useLoad(() => api.webhooks(), [], EVERY_MS);
  const [adding, setAdding] = useState(false);
  const [deleting, setDeleting] = useState<Webhook>();
  const [tests, setTests] = useState<Record<string, WebhookTest | string>>({});
  const sendTest = async (name: string) => {
    setTests((t) => ({ ...t, [name]: 'sending' }));
    try {
      const outcome = await api.testWebhook(name);
      setTests((t) => ({ ...t, [name]: outcome }));
    } catch (e) {
      setTests((t) => ({ ...t, [name]: (e as Error).message }));
    }
  };
  return (
    <section aria-labelledby="webhooks-title">
      <div class="row">
        <h2 id="webhooks-title">Webhooks</h2>
        <button type="button" class="primary" disabled={adding} onClick={() => setAdding(true)}>
          Add a webhook
        </button>
      </div>
      {adding && (
        <WebhookForm
          onCancel={() => setAdding(false)}
          onSaved={() => {
            setAdding(false);
            list.reload();
          }}
        />
      )}
      {list.error && <ErrorNote error={list.error} what="Could not read the webhooks" />}
      {!list.data ? (
        <Loading />
      ) : list.data.length === 0 ? (
        <p class="muted">
          No webhook. Add one here, or in the configuration file (<code>[[notifications.webhooks]]</code>).
        </p>
      ) : (
        <div class="table-wrap">
          <table data-testid="webhooks-table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">URL</th>
                <th scope="col">Sends</th>
                <th scope="col">Delivered</th>
                <th scope="col">Failed attempts</th>
                <th scope="col">Dead-lettered</th>
                <th scope="col">Pending</th>
                <th scope="col">Last error</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.data.map((w) => {
                const test = tests[w.name];
                return (
                  <tr key={w.name} data-webhook={w.name}>
                    <th scope="row">
                      {w.name}{' '}
                      {w.source === 'config' && (
                        <span class="badge" title="Defined in the configuration file: change it there">
                          config file
                        </span>
                      )}
                    </th>
                    <td>
                      <code>{w.config.url}</code>
                    </td>
                    <td class="small">
                      {w.config.kinds?.length ? w.config.kinds.join(', ') : 'every kind'}
                      {w.config.min_severity ? `, ${w.config.min_severity} or worse` : ''} ·{' '}
                      {w.config.format ?? 'json'}
                    </td>
                    <td data-health="delivered">{num(w.health.delivered)}</td>
                    <td data-health="failed_attempts">{num(w.health.failed_attempts)}</td>
                    <td data-health="dead_lettered">{num(w.health.dead_lettered)}</td>
                    <td data-health="pending">{num(w.health.pending)}</td>
                    <td class="small">{w.health.last_error ?? <span class="muted">—</span>}</td>
                    <td>
                      <button
                        type="button"
                        aria-label={`Send test to ${w.name}`}
                        disabled={test === 'sending'}
                        onClick={() => sendTest(w.name)}
                      >
                        Send test
                      </button>{' '}
                      {w.source === 'api' && (
                        <button type="button" class="danger" aria-label={`Delete webhook ${w.name}`} onClick={() => setDeleting(w)}>
                          Delete
                        </button>
                      )}
                      {test && test !== 'sending' && (
                        <p class={typeof test !== 'string' && test.ok ? 'ok small' : 'error small'} data-testid="test-outcome" role="status">
                          {typeof test === 'string'
                            ? test
                            : test.ok
                              ? `Receiver answered ${test.status}`
                              : (test.error ?? 'failed')}
                        </p>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {deleting && (
        <Confirm
          title={`Delete webhook ${deleting.name}?`}
          confirmLabel="Delete"
          danger
          onConfirm={async () => {
            await api.deleteWebhook(deleting.name);
            list.reload();
          }}
          onClose={() => setDeleting(undefined)}
        >
          <p>Events not yet delivered to it are not delivered.</p>
        </Confirm>
      )}
    </section>
  );
}

function WebhookForm({ onCancel, onSaved }: { onCancel: () => void; onSaved: () => void }) {
  const [name, setName] = useState('');
  const [url, setUrl] = useState('');
  const [kinds, setKinds] = useState('');
  const [minSeverity, setMinSeverity] = useState('');
  const [format, setFormat] = useState<'json' | 'slack'>('json');
  const [secret, setSecret] = useState('');
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="form"
      aria-label="New webhook"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(undefined);
        const config: WebhookConfig = {
          url: url.trim(),
          kinds: kinds
            .split(',')
            .map((k) => k.trim())
            .filter(Boolean),
          format,
        };
        if (minSeverity) config.min_severity = minSeverity as Severity;
        if (secret) config.secret = secret;
        try {
          await api.putWebhook(name.trim(), config);
          onSaved();
        } catch (err) {
          setError(err instanceof ApiError ? err : new ApiError(0, 'client', String(err)));
          setBusy(false);
        }
      }}
    >
      <div class="grid3">
        <label>
          Name
          <input required value={name} pattern="[A-Za-z0-9_\-]{1,64}" onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          URL
          <input required type="url" value={url} placeholder="https://…" onInput={(e) => setUrl(e.currentTarget.value)} />
        </label>
        <label>
          Kinds
          <input value={kinds} placeholder="every kind; or comma-separated" onInput={(e) => setKinds(e.currentTarget.value)} />
        </label>
        <label>
          Minimum severity
          <select value={minSeverity} onChange={(e) => setMinSeverity(e.currentTarget.value)}>
            <option value="">info (everything)</option>
            {SEVERITIES.slice(1).map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Format
          <select value={format} onChange={(e) => setFormat(e.currentTarget.value as 'json' | 'slack')}>
            <option value="json">JSON (the event)</option>
            <option value="slack">Slack ({'{"text": …}'})</option>
          </select>
        </label>
        <label>
          Secret
          <input type="password" value={secret} autoComplete="off" placeholder="optional: signs each body" onInput={(e) => setSecret(e.currentTarget.value)} />
        </label>
      </div>
      {error && <ErrorNote error={error} what="Not saved" />}
      <div class="row">
        <button type="submit" class="primary" disabled={busy}>
          Save webhook
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
