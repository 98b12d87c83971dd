// Tenants, for the operators (docs/security.md, docs/gui.md): every tenant with
// its users, limits and usage; tenants made over the API can be made, changed
// and deleted here, those of the configuration file are read-only.
//   GET    /v1/tenants → {tenants:[TenantInfo]}     (403 `forbidden` for anyone else)
//   PUT    /v1/tenants/{name} {users, limits, jetstream}   (201 made, 200 replaced;
//          a user without "password" keeps its own; 409 `tenant_read_only`,
//          422 `invalid_config`)
//   DELETE /v1/tenants/{name}                        (204; 404; 409)
import { useState } from 'preact/hooks';
import {
  api,
  type ResponsesConfig,
  type RulesConfig,
  type SubjectList,
  type TenantInfo,
  type TenantPermissions,
  type TenantSpec,
  type TenantUser,
} from '../api';
import { Confirm } from '../components/Confirm';
import { ErrorNote, Loading, NotProvided, isMissing } from '../components/Status';
import { num } from '../format';
import { useLoad, useTitle } from '../hooks';
import { setQuery, useLocation } from '../router';

const EVERY_MS = 5000;

export function Tenants() {
  useTitle('Tenants');
  const { query } = useLocation();
  const creating = query.get('new') === '1';
  const editing = query.get('edit');
  const list = useLoad(() => api.tenants(), [], EVERY_MS);
  const [deleting, setDeleting] = useState<TenantInfo>();
  const [note, setNote] = useState<string>();
  if (isMissing(list.error)) {
    return (
      <section>
        <h1 tabIndex={-1}>Tenants</h1>
        <NotProvided feature="tenant administration" route="GET /v1/tenants" />
      </section>
    );
  }
  const edited = editing ? list.data?.find((t) => t.name === editing) : undefined;
  const saved = (what: string) => {
    setNote(what);
    setQuery({ new: null, edit: null }, false);
    list.reload();
  };
  return (
    <section>
      <div class="row">
        <h1 tabIndex={-1}>Tenants</h1>
        <button
          type="button"
          class="primary"
          disabled={creating}
          onClick={() => {
            setNote(undefined);
            setQuery({ new: '1', edit: null }, false);
          }}
        >
          New tenant
        </button>
      </div>
      <p class="muted">
        Each tenant has its own users, subjects and stations. Tenants made here are kept in the data directory; those of
        the configuration file are changed there.
      </p>
      {note && (
        <p role="status" class="ok">
          {note}
        </p>
      )}
      {creating && (
        <TenantForm
          key="new"
          onCancel={() => setQuery({ new: null }, false)}
          onSaved={(t) => saved(`Made tenant ${t.name}.`)}
        />
      )}
      {editing && list.data && !edited && (
        <p class="error" role="alert">
          There is no tenant {editing}.
        </p>
      )}
      {edited && edited.source === 'api' && (
        <TenantForm
          key={`edit-${edited.name}`}
          tenant={edited}
          onCancel={() => setQuery({ edit: null }, false)}
          onSaved={(t) => saved(`Saved tenant ${t.name}.`)}
        />
      )}
      {list.error && <ErrorNote error={list.error} what="Could not list tenants" />}
      {!list.data ? (
        !list.error && <Loading />
      ) : (
        <div class="table-wrap">
          <table data-testid="tenants-table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Source</th>
                <th scope="col">Users</th>
                <th scope="col">Limits</th>
                <th scope="col">Usage</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.data.map((t) => (
                <tr key={t.name} data-tenant={t.name} aria-selected={editing === t.name}>
                  <th scope="row">
                    <code>{t.name}</code>
                    {t.exports.length > 0 && <div class="muted small">exports {t.exports.join(', ')}</div>}
                    {t.imports.length > 0 && <div class="muted small">imports {t.imports.join(', ')}</div>}
                  </th>
                  <td>
                    <span class="badge">{t.source}</span>
                    {t.system && (
                      <>
                        {' '}
                        <span class="badge" title="Its users are the broker's operators">
                          operators
                        </span>
                      </>
                    )}
                  </td>
                  <td>
                    {t.users.length === 0 ? (
                      <span class="muted">none</span>
                    ) : (
                      <ul class="plain">
                        {t.users.map((u) => (
                          <li key={u.user}>
                            <code>{u.user}</code> <span class="muted small">{u.login}</span>
                            {u.permissions && (
                              <span class="muted small" title={permissionsSummary(u.permissions)}>
                                {' '}
                                · restricted
                              </span>
                            )}
                          </li>
                        ))}
                      </ul>
                    )}
                  </td>
                  <td class="small">{limitsSummary(t)}</td>
                  <td class="small">
                    <ul class="plain">
                      <li>connections: {num(t.usage.connections)}</li>
                      <li>stations: {num(t.usage.stations)}</li>
                      <li>consumer groups: {num(t.usage.consumers)}</li>
                    </ul>
                  </td>
                  <td class="actions-cell">
                    {t.source === 'api' ? (
                      <>
                        <button
                          type="button"
                          aria-label={`Edit tenant ${t.name}`}
                          onClick={() => {
                            setNote(undefined);
                            setQuery({ edit: t.name, new: null }, false);
                          }}
                        >
                          Edit
                        </button>
                        <button
                          type="button"
                          class="danger"
                          aria-label={`Delete tenant ${t.name}`}
                          onClick={() => setDeleting(t)}
                        >
                          Delete
                        </button>
                      </>
                    ) : (
                      <span class="muted small">defined in the configuration file</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {deleting && (
        <Confirm
          title={`Delete tenant ${deleting.name}?`}
          confirmLabel="Delete tenant"
          danger
          onConfirm={async () => {
            await api.deleteTenant(deleting.name);
            setNote(`Deleted tenant ${deleting.name}.`);
            if (editing === deleting.name) setQuery({ edit: null }, false);
          }}
          onClose={() => {
            setDeleting(undefined);
            list.reload();
          }}
        >
          <p>
            Its users can no longer log in, and their connections are closed now. Its stations stay on disk and are its
            again if a tenant of that name is made again.
          </p>
        </Confirm>
      )}
    </section>
  );
}

function limitsSummary(t: TenantInfo): string {
  const parts: string[] = [];
  if (t.limits.max_connections != null) parts.push(`max connections ${num(t.limits.max_connections)}`);
  if (t.jetstream.max_streams != null) parts.push(`max stations ${num(t.jetstream.max_streams)}`);
  if (t.jetstream.max_consumers != null) parts.push(`max consumer groups ${num(t.jetstream.max_consumers)}`);
  return parts.length ? parts.join(' · ') : 'no limits';
}

function permissionsSummary(p: TenantPermissions): string {
  const lines: string[] = [];
  for (const [what, rules] of [
    ['publish', p.publish],
    ['subscribe', p.subscribe],
  ] as const) {
    const { allow, deny } = splitRules(rules);
    if (allow !== undefined) lines.push(`${what} allow: ${allow || '(nothing)'}`);
    if (deny) lines.push(`${what} deny: ${deny}`);
  }
  if (p.allow_responses) lines.push('may answer requests');
  return lines.join('\n') || 'no limits';
}

const listText = (l: SubjectList | null | undefined): string | undefined =>
  l == null ? undefined : (typeof l === 'string' ? [l] : l).join(', ');

/** A rule list as the form's text fields; `allow` undefined means everything. */
function splitRules(r: RulesConfig | undefined): { allow?: string; deny: string } {
  if (r === undefined || r === null) return { deny: '' };
  if (typeof r === 'string' || Array.isArray(r)) return { allow: listText(r), deny: '' };
  return { allow: listText(r.allow), deny: listText(r.deny) ?? '' };
}

/** Comma-separated text as a list (empty entries dropped). A subscribe entry may
 * name a queue group after a space (`jobs.* workers`). */
const entries = (text: string): string[] =>
  text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

interface UserRow {
  /** Stable across edits, for the list's keys and field ids. */
  key: number;
  user: string;
  password: string;
  /** A user the tenant has now: its name is fixed, its password optional. */
  existing: boolean;
  login?: string;
  pubAllow: string;
  pubDeny: string;
  subAllow: string;
  subDeny: string;
  allowResponses: boolean;
  /** The user's `allow_responses` as it was (limits the form does not edit). */
  responses?: ResponsesConfig;
  /** The user's rules as they were, sent back as they were while their text is
   * unchanged (an explicit empty allow list has no text of its own). */
  publish?: { rules: RulesConfig; allow: string; deny: string };
  subscribe?: { rules: RulesConfig; allow: string; deny: string };
}

let nextKey = 1;

function rowOf(u?: TenantUser): UserRow {
  const pub = splitRules(u?.permissions?.publish);
  const sub = splitRules(u?.permissions?.subscribe);
  const responses = u?.permissions?.allow_responses;
  return {
    key: nextKey++,
    user: u?.user ?? '',
    password: '',
    existing: !!u,
    login: u?.login,
    pubAllow: pub.allow ?? '',
    pubDeny: pub.deny,
    subAllow: sub.allow ?? '',
    subDeny: sub.deny,
    allowResponses: !!responses,
    responses: responses || undefined,
    publish: u?.permissions?.publish != null ? { rules: u.permissions.publish, allow: pub.allow ?? '', deny: pub.deny } : undefined,
    subscribe:
      u?.permissions?.subscribe != null ? { rules: u.permissions.subscribe, allow: sub.allow ?? '', deny: sub.deny } : undefined,
  };
}

function rules(
  allow: string,
  deny: string,
  was?: { rules: RulesConfig; allow: string; deny: string },
): RulesConfig | undefined {
  if (was && was.allow === allow && was.deny === deny) return was.rules;
  const a = entries(allow);
  const d = entries(deny);
  if (!a.length && !d.length) return undefined;
  return { ...(a.length ? { allow: a } : {}), ...(d.length ? { deny: d } : {}) };
}

function specUser(r: UserRow): TenantSpec['users'][number] {
  const permissions: TenantPermissions = {};
  const publish = rules(r.pubAllow, r.pubDeny, r.publish);
  const subscribe = rules(r.subAllow, r.subDeny, r.subscribe);
  if (publish) permissions.publish = publish;
  if (subscribe) permissions.subscribe = subscribe;
  if (r.allowResponses) permissions.allow_responses = r.responses ?? true;
  const out: TenantSpec['users'][number] =
    r.existing && r.login === 'nkey' ? { nkey: r.user } : { user: r.user.trim() };
  // Without a password an existing user keeps its own.
  if (r.password) out.password = r.password;
  if (Object.keys(permissions).length) out.permissions = permissions;
  return out;
}

/** A limit field: empty is no limit. */
function limit(text: string): number | undefined {
  const t = text.trim();
  return t === '' ? undefined : Number(t);
}

const limitText = (n: number | undefined) => (n == null ? '' : String(n));

function TenantForm({
  tenant,
  onSaved,
  onCancel,
}: {
  tenant?: TenantInfo;
  onSaved: (t: TenantInfo) => void;
  onCancel: () => void;
}) {
  const [name, setName] = useState(tenant?.name ?? '');
  const [rows, setRows] = useState<UserRow[]>(() => (tenant ? tenant.users.map(rowOf) : [rowOf()]));
  const [maxConnections, setMaxConnections] = useState(limitText(tenant?.limits.max_connections));
  const [maxStreams, setMaxStreams] = useState(limitText(tenant?.jetstream.max_streams));
  const [maxConsumers, setMaxConsumers] = useState(limitText(tenant?.jetstream.max_consumers));
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [tried, setTried] = useState(false);

  // Checked here only so far as to say what is wrong before a round trip; the
  // broker checks everything and its 422 text is shown as it is.
  const nameError = tenant ? undefined : !name.trim() ? 'A name is needed.' : undefined;
  const limitError = (text: string) =>
    text.trim() !== '' && !(Number.isInteger(Number(text)) && Number(text) >= 0)
      ? 'A whole number, or empty for no limit.'
      : undefined;
  const limitErrors = [maxConnections, maxStreams, maxConsumers].map(limitError);
  const invalid = !!nameError || limitErrors.some(Boolean) || rows.some((r) => !r.user.trim());

  const change = (key: number, patch: Partial<UserRow>) =>
    setRows((rs) => rs.map((r) => (r.key === key ? { ...r, ...patch } : r)));

  const submit = async (e: Event) => {
    e.preventDefault();
    setTried(true);
    if (invalid) return;
    const spec: TenantSpec = {
      users: rows.map(specUser),
      limits: {},
      jetstream: {},
    };
    const mc = limit(maxConnections);
    const ms = limit(maxStreams);
    const mk = limit(maxConsumers);
    if (mc !== undefined) spec.limits.max_connections = mc;
    if (ms !== undefined) spec.jetstream.max_streams = ms;
    if (mk !== undefined) spec.jetstream.max_consumers = mk;
    setBusy(true);
    setError(undefined);
    try {
      onSaved(await api.putTenant(tenant?.name ?? name.trim(), spec));
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const title = tenant ? `Edit tenant ${tenant.name}` : 'New tenant';
  const showName = tried || name !== '';
  return (
    <form class="form" onSubmit={submit} aria-label={title} data-testid="tenant-form" noValidate>
      <h2>{title}</h2>
      {!tenant && (
        <div class="field">
          <label>
            Name
            <input
              value={name}
              onInput={(e) => setName(e.currentTarget.value)}
              autocomplete="off"
              aria-invalid={showName && nameError ? true : undefined}
              aria-describedby={showName && nameError ? 'tf-name-err' : 'tf-name-hint'}
            />
          </label>
          {showName && nameError ? (
            <small id="tf-name-err" class="field-error">
              {nameError}
            </small>
          ) : (
            <small id="tf-name-hint" class="muted">
              Letters, digits, <code>-</code> and <code>_</code>.
            </small>
          )}
        </div>
      )}
      <fieldset>
        <legend>Users</legend>
        <p class="muted small">
          Subject lists are comma-separated; an empty allow list allows everything, and deny wins over allow. A
          subscribe entry may name a queue group after a space (<code>jobs.* workers</code>).
        </p>
        {rows.length === 0 && <p class="muted">No users: nobody can log in to this tenant.</p>}
        {rows.map((r, i) => (
          <UserFields
            key={r.key}
            row={r}
            index={i}
            tried={tried}
            onChange={(patch) => change(r.key, patch)}
            onRemove={() => setRows((rs) => rs.filter((x) => x.key !== r.key))}
          />
        ))}
        <div class="actions">
          <button type="button" onClick={() => setRows((rs) => [...rs, rowOf()])}>
            Add user
          </button>
        </div>
      </fieldset>
      <fieldset>
        <legend>Limits</legend>
        <div class="grid3">
          {(
            [
              ['max_connections', 'Max connections', maxConnections, setMaxConnections, 'NATS and MQTT connections at once'],
              ['max_streams', 'Max stations', maxStreams, setMaxStreams, 'JetStream max_streams'],
              ['max_consumers', 'Max consumer groups', maxConsumers, setMaxConsumers, 'over all its stations'],
            ] as const
          ).map(([id, label, value, set, hint], i) => (
            <div class="field" key={id}>
              <label title={hint}>
                {label}
                <input
                  inputMode="numeric"
                  value={value}
                  placeholder="no limit"
                  onInput={(e) => set(e.currentTarget.value)}
                  aria-invalid={limitErrors[i] ? true : undefined}
                  aria-describedby={limitErrors[i] ? `tf-${id}-err` : undefined}
                />
              </label>
              {limitErrors[i] && (
                <small id={`tf-${id}-err`} class="field-error">
                  {limitErrors[i]}
                </small>
              )}
            </div>
          ))}
        </div>
      </fieldset>
      {error && (
        <p class="error" role="alert" data-testid="tenant-form-error">
          {error}
        </p>
      )}
      <div class="actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Saving…' : tenant ? 'Save tenant' : 'Make tenant'}
        </button>
      </div>
    </form>
  );
}

function UserFields({
  row: r,
  index,
  tried,
  onChange,
  onRemove,
}: {
  row: UserRow;
  index: number;
  tried: boolean;
  onChange: (patch: Partial<UserRow>) => void;
  onRemove: () => void;
}) {
  const id = `tf-u${r.key}`;
  const who = r.user.trim() || `user ${index + 1}`;
  const nkey = r.existing && r.login === 'nkey';
  const userError = tried && !r.user.trim() ? 'A user name is needed.' : undefined;
  // An explicit empty allow list (allow nothing) has no text; say so while unchanged.
  const allowHint = (was: UserRow['publish'], text: string) =>
    was && was.allow === '' && text === '' && splitRules(was.rules).allow === '' ? 'nothing (an empty list)' : 'everything';
  return (
    <fieldset class="tenant-user" data-testid="tenant-user" aria-label={`User ${who}`}>
      <div class="tenant-user-grid">
        <div class="field">
          <label>
            User
            <input
              value={r.user}
              readOnly={r.existing}
              title={r.existing ? 'To rename a user, remove it and add the new name' : undefined}
              autocomplete="off"
              onInput={(e) => onChange({ user: e.currentTarget.value })}
              aria-invalid={userError ? true : undefined}
              aria-describedby={userError ? `${id}-err` : undefined}
            />
          </label>
          {userError && (
            <small id={`${id}-err`} class="field-error">
              {userError}
            </small>
          )}
        </div>
        <label>
          Password
          <input
            type="password"
            value={r.password}
            autocomplete="new-password"
            disabled={nkey}
            placeholder={nkey ? 'logs in with its NKey' : r.existing ? 'unchanged' : ''}
            onInput={(e) => onChange({ password: e.currentTarget.value })}
          />
        </label>
        <label class="inline">
          <input
            type="checkbox"
            checked={r.allowResponses}
            onChange={(e) => onChange({ allowResponses: e.currentTarget.checked })}
          />{' '}
          May answer requests (allow_responses)
        </label>
        <div class="actions end">
          <button type="button" class="danger" onClick={onRemove} aria-label={`Remove user ${who}`}>
            Remove user
          </button>
        </div>
        <label>
          Publish: allow
          <input value={r.pubAllow} placeholder={allowHint(r.publish, r.pubAllow)} onInput={(e) => onChange({ pubAllow: e.currentTarget.value })} />
        </label>
        <label>
          Publish: deny
          <input value={r.pubDeny} placeholder="nothing" onInput={(e) => onChange({ pubDeny: e.currentTarget.value })} />
        </label>
        <label>
          Subscribe: allow
          <input value={r.subAllow} placeholder={allowHint(r.subscribe, r.subAllow)} onInput={(e) => onChange({ subAllow: e.currentTarget.value })} />
        </label>
        <label>
          Subscribe: deny
          <input value={r.subDeny} placeholder="nothing" onInput={(e) => onChange({ subDeny: e.currentTarget.value })} />
        </label>
      </div>
    </fieldset>
  );
}
