// Create or edit a station, with inline validation and the server's errors.
import { useState } from 'preact/hooks';
import { api, ApiError, type Station } from '../api';
import { useLoad } from '../hooks';

interface Fields {
  name: string;
  description: string;
  subjects: string;
  policy: string;
  max_msgs: string;
  max_bytes: string;
  max_age_s: string;
  max_msgs_per_subject: string;
  discard: string;
  storage: string;
  replicas: string;
  duplicate_window_s: string;
  max_msg_size: string;
  deny_delete: boolean;
  deny_purge: boolean;
  schema: string;
  /** '' follows the schema's active version. */
  schema_version: string;
  dl_max_deliveries: boolean;
  dl_terminated: boolean;
  dl_schema_violation: boolean;
  dl_max_msgs: string;
  dl_max_age_s: string;
  tier: boolean;
  tier_local_max_bytes: string;
  tier_local_max_age_s: string;
  tier_segment_bytes: string;
  tier_segment_max_age_s: string;
  tier_max_pending_bytes: string;
}

function fromStation(s?: Station): Fields {
  return {
    name: s?.name ?? '',
    description: s?.description ?? '',
    subjects: s ? s.subjects.join('\n') : '',
    policy: s?.retention.policy ?? 'limits',
    max_msgs: String(s?.retention.max_msgs ?? -1),
    max_bytes: String(s?.retention.max_bytes ?? -1),
    max_age_s: String((s?.retention.max_age_ms ?? 0) / 1000),
    max_msgs_per_subject: String(s?.retention.max_msgs_per_subject ?? -1),
    discard: s?.retention.discard ?? 'old',
    storage: s?.storage ?? 'file',
    replicas: String(s?.replicas ?? 1),
    duplicate_window_s: String((s?.duplicate_window_ms ?? 120000) / 1000),
    max_msg_size: String(s?.max_msg_size ?? -1),
    deny_delete: s?.deny_delete ?? false,
    deny_purge: s?.deny_purge ?? false,
    schema: s?.schema ?? '',
    schema_version: s?.schema_version ? String(s.schema_version) : '',
    dl_max_deliveries: s?.dead_letter?.max_deliveries ?? false,
    dl_terminated: s?.dead_letter?.terminated ?? false,
    dl_schema_violation: s?.dead_letter?.schema_violation ?? false,
    dl_max_msgs: String(s?.dead_letter?.max_msgs ?? 10000),
    dl_max_age_s: String((s?.dead_letter?.max_age_ms ?? 0) / 1000),
    tier: !!s?.tier,
    // The broker's defaults (docs/tiering.md) for a station not tiered yet.
    tier_local_max_bytes: String(s?.tier?.local_max_bytes ?? 1024 ** 3),
    tier_local_max_age_s: String((s?.tier?.local_max_age_ms ?? 0) / 1000),
    tier_segment_bytes: String(s?.tier?.segment_bytes ?? 32 * 1024 ** 2),
    tier_segment_max_age_s: String((s?.tier?.segment_max_age_ms ?? 600000) / 1000),
    tier_max_pending_bytes: String(s?.tier?.max_pending_bytes ?? 0),
  };
}

const NAME_RE = /^[^\s.*>/\\]+$/;
const TOKEN_RE = /^[^\s]+$/;

export function validate(f: Fields, editing: boolean): Partial<Record<keyof Fields, string>> {
  const errors: Partial<Record<keyof Fields, string>> = {};
  if (!editing) {
    if (!f.name) errors.name = 'A name is required.';
    else if (!NAME_RE.test(f.name)) errors.name = 'No spaces, dots, *, >, / or \\ in a station name.';
    else if (f.name.startsWith('$')) errors.name = 'Names starting with $ are reserved for the broker.';
  }
  for (const s of subjectList(f.subjects)) {
    const tokens = s.split('.');
    if (!TOKEN_RE.test(s) || tokens.some((t) => t === '')) {
      errors.subjects = `"${s}" is not a subject filter: tokens separated by single dots, no spaces.`;
      break;
    }
    if (tokens.slice(0, -1).includes('>')) {
      errors.subjects = `"${s}": ">" may only be the last token.`;
      break;
    }
  }
  const integer = (k: keyof Fields, min: number, what: string) => {
    const v = String(f[k]).trim();
    if (!/^-?\d+$/.test(v) || Number(v) < min) errors[k] = `${what} must be a whole number ≥ ${min}.`;
  };
  integer('max_msgs', -1, 'Max messages');
  integer('max_bytes', -1, 'Max bytes');
  integer('max_msgs_per_subject', -1, 'Max messages per subject');
  integer('max_msg_size', -1, 'Max message size');
  const seconds = (k: keyof Fields, what: string) => {
    const v = Number(String(f[k]).trim());
    if (String(f[k]).trim() === '' || !isFinite(v) || v < 0) errors[k] = `${what} must be a number of seconds ≥ 0.`;
  };
  seconds('max_age_s', 'Max age');
  integer('dl_max_msgs', -1, 'Most dead letters');
  seconds('dl_max_age_s', 'Dead-letter max age');
  seconds('duplicate_window_s', 'Duplicate window');
  if (f.tier) {
    integer('tier_local_max_bytes', 0, 'Local bytes');
    seconds('tier_local_max_age_s', 'Local age');
    integer('tier_segment_bytes', 1, 'Segment size');
    seconds('tier_segment_max_age_s', 'Segment age');
    integer('tier_max_pending_bytes', 0, 'Most bytes waiting');
  }
  return errors;
}

const subjectList = (s: string) =>
  s
    .split(/[\n,]/)
    .map((x) => x.trim())
    .filter(Boolean);

function toDefinition(f: Fields, base?: Station): Record<string, unknown> {
  const def: Record<string, unknown> = {
    description: f.description.trim() || null,
    retention: {
      policy: f.policy,
      max_msgs: Number(f.max_msgs),
      max_bytes: Number(f.max_bytes),
      max_age_ms: Math.round(Number(f.max_age_s) * 1000),
      max_msgs_per_subject: Number(f.max_msgs_per_subject),
      discard: f.discard,
    },
    storage: f.storage,
    replicas: Number(f.replicas),
    duplicate_window_ms: Math.round(Number(f.duplicate_window_s) * 1000),
    max_msg_size: Number(f.max_msg_size),
    deny_delete: f.deny_delete,
    deny_purge: f.deny_purge,
    schema: f.schema || null,
    schema_version: f.schema && f.schema_version ? Number(f.schema_version) : null,
    dead_letter: {
      max_deliveries: f.dl_max_deliveries,
      terminated: f.dl_terminated,
      schema_violation: f.dl_schema_violation,
      max_msgs: Number(f.dl_max_msgs),
      max_age_ms: Math.round(Number(f.dl_max_age_s) * 1000),
    },
  };
  def.tier = f.tier
    ? {
        local_max_bytes: Number(f.tier_local_max_bytes),
        local_max_age_ms: Math.round(Number(f.tier_local_max_age_s) * 1000),
        segment_bytes: Number(f.tier_segment_bytes),
        segment_max_age_ms: Math.round(Number(f.tier_segment_max_age_s) * 1000),
        max_pending_bytes: Number(f.tier_max_pending_bytes),
      }
    : null;
  const subjects = subjectList(f.subjects);
  if (subjects.length) def.subjects = subjects;
  if (base) {
    // PUT replaces the whole definition: keep what this form does not show.
    def.flush_interval_ms = base.flush_interval_ms;
    def.max_consumers = base.max_consumers;
    def.metadata = base.metadata;
    def.compact = base.compact ?? null;
  } else {
    def.name = f.name.trim();
  }
  return def;
}

interface Props {
  station?: Station;
  onSaved: (s: Station) => void;
  onCancel: () => void;
}

export function StationForm({ station, onSaved, onCancel }: Props) {
  const editing = !!station;
  const [f, setF] = useState<Fields>(() => fromStation(station));
  const [touched, setTouched] = useState<Set<string>>(new Set());
  const [submitted, setSubmitted] = useState(false);
  const [serverError, setServerError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const errors = validate(f, editing);
  const schemas = useLoad(() => api.schemas(), []);
  const chosen = schemas.data?.find((x) => x.name === f.schema);
  const show = (k: keyof Fields) => (submitted || touched.has(k) ? errors[k] : undefined);

  const set = <K extends keyof Fields>(k: K, v: Fields[K]) => setF((old) => ({ ...old, [k]: v }));
  const blur = (k: string) => () => setTouched((t) => new Set(t).add(k));

  const submit = async (e: Event) => {
    e.preventDefault();
    setSubmitted(true);
    if (Object.keys(errors).length) {
      const first = Object.keys(errors)[0];
      document.getElementById(`sf-${first}`)?.focus();
      return;
    }
    setBusy(true);
    setServerError(undefined);
    try {
      const def = toDefinition(f, station);
      const saved = editing ? await api.updateStation(station.name, def) : await api.createStation(def);
      onSaved(saved);
    } catch (err) {
      setServerError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };

  const field = (k: keyof Fields, label: string, props: Record<string, unknown> = {}, hint?: string) => {
    const err = show(k);
    return (
      <label for={`sf-${k}`}>
        {label}
        <input
          id={`sf-${k}`}
          name={k}
          value={String(f[k])}
          onInput={(e) => set(k, e.currentTarget.value as never)}
          onBlur={blur(k)}
          aria-invalid={err ? true : undefined}
          aria-describedby={err ? `sf-${k}-err` : hint ? `sf-${k}-hint` : undefined}
          {...props}
        />
        {hint && !err && (
          <small id={`sf-${k}-hint`} class="muted">
            {hint}
          </small>
        )}
        {err && (
          <small id={`sf-${k}-err`} class="field-error">
            {err}
          </small>
        )}
      </label>
    );
  };

  return (
    <form class="form station-form" onSubmit={submit} noValidate aria-labelledby="sf-title" data-testid="station-form">
      <h2 id="sf-title">{editing ? `Edit station ${station.name}` : 'Create a station'}</h2>
      {serverError && (
        <div class="error" role="alert" data-testid="server-error">
          <strong>The broker refused this:</strong> {serverError.message}{' '}
          {serverError.code && <code class="code">{serverError.code}</code>}
        </div>
      )}
      <div class="grid2">
        {field('name', 'Name', { required: true, disabled: editing, autocomplete: 'off' })}
        {field('description', 'Description')}
      </div>
      <label for="sf-subjects">
        Subjects (one per line; wildcards * and &gt;)
        <textarea
          id="sf-subjects"
          name="subjects"
          rows={3}
          value={f.subjects}
          placeholder={f.name ? `${f.name} (the default)` : 'orders.>'}
          onInput={(e) => set('subjects', e.currentTarget.value)}
          onBlur={blur('subjects')}
          aria-invalid={show('subjects') ? true : undefined}
          aria-describedby={show('subjects') ? 'sf-subjects-err' : undefined}
        />
        {show('subjects') && (
          <small id="sf-subjects-err" class="field-error">
            {show('subjects')}
          </small>
        )}
      </label>
      <fieldset>
        <legend>Retention</legend>
        <div class="grid3">
          <label for="sf-policy">
            Policy
            <select id="sf-policy" value={f.policy} onChange={(e) => set('policy', e.currentTarget.value)}>
              <option value="limits">limits</option>
              <option value="interest">interest</option>
              <option value="workqueue">workqueue</option>
            </select>
          </label>
          <label for="sf-discard">
            When full
            <select id="sf-discard" value={f.discard} onChange={(e) => set('discard', e.currentTarget.value)}>
              <option value="old">discard oldest</option>
              <option value="new">refuse new</option>
            </select>
          </label>
          {field('max_age_s', 'Max age (s)', { inputMode: 'decimal' }, '0 keeps forever')}
          {field('max_msgs', 'Max messages', { inputMode: 'numeric' }, '-1 is unlimited')}
          {field('max_bytes', 'Max bytes', { inputMode: 'numeric' }, '-1 is unlimited')}
          {field('max_msgs_per_subject', 'Max per subject', { inputMode: 'numeric' }, '-1 is unlimited')}
        </div>
      </fieldset>
      <fieldset>
        <legend>Storage and limits</legend>
        <div class="grid3">
          <label for="sf-storage">
            Storage
            <select
              id="sf-storage"
              value={f.storage}
              disabled={editing}
              onChange={(e) => set('storage', e.currentTarget.value)}
            >
              <option value="file">file (durable)</option>
              <option value="memory">memory (lost on restart)</option>
            </select>
          </label>
          <label for="sf-replicas">
            Replicas
            <select
              id="sf-replicas"
              value={f.replicas}
              aria-describedby="sf-replicas-help"
              onChange={(e) => set('replicas', e.currentTarget.value)}
            >
              <option value="1">1 (one node)</option>
              <option value="3">3 (a cluster of 3 or more)</option>
              <option value="5">5 (a cluster of 5 or more)</option>
            </select>
            <small id="sf-replicas-help" class="muted">
              Acknowledged once fsynced on a quorum. Changes in place: from 1, the node holding the station seeds the new replicas; down to 1, the leader keeps the one copy.
            </small>
          </label>
          {field('duplicate_window_s', 'Duplicate window (s)', { inputMode: 'decimal' })}
          {field('max_msg_size', 'Max message size (bytes)', { inputMode: 'numeric' }, '-1 is unlimited')}
        </div>
        <label class="inline">
          <input type="checkbox" checked={f.deny_delete} onChange={(e) => set('deny_delete', e.currentTarget.checked)} />{' '}
          Refuse message deletes
        </label>
        <label class="inline">
          <input type="checkbox" checked={f.deny_purge} onChange={(e) => set('deny_purge', e.currentTarget.checked)} />{' '}
          Refuse purges
        </label>
      </fieldset>
      <fieldset>
        <legend>Schema and dead letters</legend>
        <div class="grid3">
          <label for="sf-schema">
            Schema
            <select
              id="sf-schema"
              value={f.schema}
              onChange={(e) => setF((old) => ({ ...old, schema: e.currentTarget.value, schema_version: '' }))}
            >
              <option value="">none</option>
              {f.schema && !chosen && <option value={f.schema}>{f.schema}</option>}
              {(schemas.data ?? []).map((x) => (
                <option key={x.name} value={x.name}>
                  {x.name}
                </option>
              ))}
            </select>
            {schemas.error && <small class="field-error">Could not list schemas: {schemas.error.message}</small>}
          </label>
          <label for="sf-schema_version">
            Schema version
            <select
              id="sf-schema_version"
              value={f.schema_version}
              disabled={!f.schema}
              onChange={(e) => set('schema_version', e.currentTarget.value)}
            >
              <option value="">active version{chosen ? ` (now v${chosen.active_version})` : ''}</option>
              {f.schema_version && !chosen?.versions.some((v) => String(v.version) === f.schema_version) && (
                <option value={f.schema_version}>pinned to v{f.schema_version}</option>
              )}
              {(chosen?.versions ?? []).map((v) => (
                <option key={v.version} value={String(v.version)}>
                  pinned to v{v.version}
                </option>
              ))}
            </select>
          </label>
        </div>
        <p class="muted small" id="sf-dl-hint">
          Keep in the dead-letter station (<code>$dls_{f.name || 'name'}</code>):
        </p>
        <label class="inline">
          <input
            type="checkbox"
            checked={f.dl_schema_violation}
            onChange={(e) => set('dl_schema_violation', e.currentTarget.checked)}
          />{' '}
          Schema violations
        </label>
        <label class="inline">
          <input
            type="checkbox"
            checked={f.dl_max_deliveries}
            onChange={(e) => set('dl_max_deliveries', e.currentTarget.checked)}
          />{' '}
          Messages past a group's max deliveries
        </label>
        <label class="inline">
          <input type="checkbox" checked={f.dl_terminated} onChange={(e) => set('dl_terminated', e.currentTarget.checked)} />{' '}
          Terminated messages
        </label>
        <div class="grid3">
          {field('dl_max_msgs', 'Most dead letters', { inputMode: 'numeric' }, '-1 is unlimited')}
          {field('dl_max_age_s', 'Dead-letter max age (s)', { inputMode: 'decimal' }, '0 keeps forever')}
        </div>
      </fieldset>
      <fieldset>
        <legend>Tiered storage on S3</legend>
        <label class="inline">
          <input
            type="checkbox"
            checked={f.tier}
            aria-describedby="sf-tier-hint"
            onChange={(e) => set('tier', e.currentTarget.checked)}
          />{' '}
          Upload sealed segments to the broker's bucket and keep only the newest on local disk
        </label>
        <p class="muted small" id="sf-tier-hint">
          Needs <code>[tier]</code> in the broker's configuration. Retention above still bounds local and remote
          together; consumers and the browser read remote messages transparently.
        </p>
        {f.tier && (
          <div class="grid3">
            {field('tier_local_max_bytes', 'Local bytes', { inputMode: 'numeric' }, '0 is no byte limit')}
            {field('tier_local_max_age_s', 'Local age (s)', { inputMode: 'decimal' }, '0 is no age limit')}
            {field('tier_segment_bytes', 'Segment size (bytes)', { inputMode: 'numeric' })}
            {field('tier_segment_max_age_s', 'Segment age (s)', { inputMode: 'decimal' }, 'sealed when its oldest is this old')}
            {field('tier_max_pending_bytes', 'Most bytes waiting to upload', { inputMode: 'numeric' }, '0 is no cap')}
          </div>
        )}
      </fieldset>
      <div class="actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Saving…' : editing ? 'Save changes' : 'Create station'}
        </button>
      </div>
    </form>
  );
}
