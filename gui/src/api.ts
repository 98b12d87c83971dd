// The broker's public HTTP API (docs/http.md): the only thing the console talks to.

export type Headers = Record<string, string | string[]>;

export interface Retention {
  policy: 'limits' | 'interest' | 'workqueue';
  max_msgs: number;
  max_bytes: number;
  max_age_ms: number;
  max_msgs_per_subject: number;
  discard: 'old' | 'new';
}

export interface StationState {
  messages: number;
  bytes: number;
  first_seq: number;
  first_time: string | null;
  last_seq: number;
  last_time: string | null;
  num_subjects: number;
  num_deleted: number;
  groups: number;
  /** A tiered station's local and remote shares (docs/tiering.md). */
  tier?: TierState;
}

/** Where a tiered station's messages are, and how its remote reads went. */
export interface TierState {
  local_messages: number;
  local_bytes: number;
  local_first_seq: number;
  remote_messages: number;
  remote_bytes: number;
  segments: number;
  upload_lag_messages: number;
  upload_lag_ms: number;
  cache_hits: number;
  cache_misses: number;
}

/** A station's tiering policy (`tier` in its definition; needs `[tier]` on the broker). */
export interface TierPolicy {
  local_max_bytes: number;
  local_max_age_ms: number;
  segment_bytes: number;
  segment_max_age_ms: number;
  max_pending_bytes: number;
}

export interface Station {
  name: string;
  description: string | null;
  subjects: string[];
  retention: Retention;
  storage: 'file' | 'memory';
  duplicate_window_ms: number;
  flush_interval_ms: number | null;
  max_msg_size: number;
  max_consumers: number;
  deny_delete: boolean;
  deny_purge: boolean;
  metadata: Record<string, string>;
  created: string;
  state: StationState;
  /** Attached schema (`/v1/schemas`), and the pinned version (null: its active one). */
  schema: string | null;
  schema_version: number | null;
  dead_letter: DeadLetterPolicy;
  /** Tiered storage on S3 (null: all local). */
  tier?: TierPolicy | null;
  /** Log compaction: the newest message per subject (docs/stations.md). */
  compact?: { min_lag_ms: number; max_lag_ms: number; tombstone_retention_ms: number } | null;
  /** `$dls_<name>`, once the policy keeps something. */
  dead_letter_station: string | null;
  /** In a cluster, the node that holds its messages and groups (a replicated
   * station's leader). */
  node?: string;
  /** Copies kept on that many nodes (1, 3 or 5). */
  replicas: number;
  /** A replicated station's leader and replicas. */
  cluster?: StationCluster;
  /** The station it mirrors (JetStream `mirror`), and how far behind it is. */
  mirror?: StationOrigin;
  /** The stations it sources from (JetStream `sources`), and how far behind each is. */
  sources?: StationOrigin[];
}

/** A mirror's or a source's origin and progress (`docs/stations.md#mirrors-and-sources`). */
export interface StationOrigin {
  name: string;
  /** `<origin>@<host:port>` (or `@<remote name>`) for an origin on another broker. */
  remote?: string;
  filter_subject?: string;
  /** The last origin sequence copied. */
  last_seq: number;
  /** Origin messages not copied yet. */
  lag: number;
  /** Milliseconds since the origin was last heard from (-1: never). */
  active_ms: number;
  /** The link's last error, while it lasts. */
  error?: string;
}

/** A replicated station's replicas, as the answering node sees them. */
export interface StationCluster {
  leader: string | null;
  /** Fewer replicas online and current than `replicas`. */
  under_replicated: boolean;
  replicas: { name: string; leader: boolean; current: boolean; lag: number; online: boolean }[];
}

/** Which failures a station copies to its dead-letter station (docs/dead-letter.md). */
export interface DeadLetterPolicy {
  max_deliveries: boolean;
  terminated: boolean;
  schema_violation: boolean;
  max_msgs: number;
  max_age_ms: number;
}

/** The fields of a station's JSON that its definition (POST/PUT) does not take. */
export const STATION_STATE_FIELDS = ['name', 'created', 'state', 'dead_letter_station', 'node', 'cluster', 'mirror', 'sources'] as const;

/** Names of dead-letter stations: `$dls_<station>`. */
export const DLS_PREFIX = '$dls_';

export interface SchemaVersion {
  version: number;
  created: string;
  definition: unknown;
}

export interface Schema {
  name: string;
  type: string;
  /** The version stations without a pinned `schema_version` validate against. */
  active_version: number;
  created: string;
  stations: string[];
  /** Oldest first. */
  versions: SchemaVersion[];
}

/** A dead-letter resend task (`POST …/dls/resend`, `GET …/dls/resend/{id}`). */
export interface ResendTask {
  id: number;
  station: string;
  state: 'running' | 'done';
  total: number;
  redelivered: number;
  republished: number;
  failed: number;
  errors: string[];
  started: string;
  finished: string | null;
}

export interface LineageNode {
  /** `producer:<protocol>:<client>`, `station:<name>`, `group:<station>/<group>`. */
  id: string;
  kind: 'producer' | 'station' | 'group';
  name: string;
}

export interface LineageEdge {
  from: string;
  to: string;
  /** Messages since the broker started. */
  messages: number;
  /** Per second, averaged over the last minute. */
  rate: number;
}

export interface LineageGraph {
  nodes: LineageNode[];
  edges: LineageEdge[];
}

export interface LineageMessage {
  msg_id: string;
  protocol: string;
  conn_id: number;
  client: string | null;
  subject: string;
  received: string;
  station: string | null;
  seq: number | null;
  deliveries: { group: string; time: string; delivery_count: number }[];
}

export interface LineageTrace {
  trace_id: string;
  messages: LineageMessage[];
}

export interface StoredMessage {
  seq: number;
  subject: string;
  time: string;
  headers: Headers;
  payload?: string;
  payload_base64?: string;
}

export interface Browse {
  messages: StoredMessage[];
  next_seq: number;
}

export interface GroupState {
  lag: number;
  pending_acks: number;
  redelivered: number;
  waiting: number;
  delivered: { group_seq: number; station_seq: number };
  ack_floor: { group_seq: number; station_seq: number };
  last_active: string | null;
}

export interface Group {
  station: string;
  name: string;
  description: string | null;
  durable: boolean;
  deliver_policy: string;
  ack_policy: string;
  ack_wait_ms: number;
  max_deliver: number;
  max_ack_pending: number;
  filter_subjects: string[];
  created: string;
  state: GroupState;
}

/** One entry of the system log (`GET /v1/events`). */
export interface SystemEvent {
  id: number;
  time: string;
  tenant: string;
  kind: string;
  /** `info`, `warning`, `error` or `critical`. */
  severity: Severity;
  protocol: string | null;
  client_id: number | null;
  client_name: string | null;
  station: string | null;
  subject: string | null;
  /** A threshold event's alarm. */
  alarm: { name: string; active: boolean } | null;
  message: string;
}

export type Severity = 'info' | 'warning' | 'error' | 'critical';

/** `GET /v1/events`' query: every condition given must hold. */
export interface EventQuery {
  limit?: number;
  /** Comma-separated kinds (an alarm's name matches its alarm events too). */
  kind?: string;
  /** At least this severe. */
  severity?: string;
  station?: string;
  /** A client's id or name. */
  client?: string;
}

/** An alarm raised now (`GET /v1/alarms`). */
export interface Alarm {
  name: string;
  message: string;
}

/** A webhook's configuration: `[[notifications.webhooks]]`' fields. */
export interface WebhookConfig {
  name?: string;
  url: string;
  kinds?: string[];
  tenants?: string[];
  min_severity?: Severity | null;
  format?: 'json' | 'slack';
  headers?: Record<string, string>;
  /** Shown as `********`; given back so, it keeps the webhook's secret. */
  secret?: string | null;
  max_attempts?: number | null;
  max_per_minute?: number | null;
  timeout?: string | null;
  retry_base?: string | null;
  retry_max?: string | null;
}

/** `GET /v1/notifications/webhooks` (operators only). */
export interface Webhook {
  name: string;
  /** `config`: the configuration file's (read-only); `api`: made here. */
  source: 'config' | 'api';
  config: WebhookConfig;
  health: {
    delivered: number;
    failed_attempts: number;
    dead_lettered: number;
    last_error: string | null;
    /** Events waiting for it. */
    pending: number;
  };
}

/** What a receiver made of `POST /v1/notifications/webhooks/{name}/test`. */
export interface WebhookTest {
  event_id: string;
  status: number | null;
  ok: boolean;
  error: string | null;
}

export interface Connection {
  protocol: string;
  id: number;
  /** One of the broker's own clients (`junction-http`, `junction-mqtt`), not a connection. */
  internal?: boolean;
  name: string | null;
  remote: string;
  start: string;
  last_activity: string;
  user: string | null;
  lang: string | null;
  version: string | null;
  in_msgs: number;
  in_bytes: number;
  out_msgs: number;
  out_bytes: number;
  pending_bytes: number;
  subscriptions: { subject: string; queue: string | null; sid: string; delivered: number }[];
  /** The tenant the client belongs to (`$G`: the default one). The operators see
   * every tenant's clients; anyone else only its own tenant's. */
  tenant?: string;
}

export interface ServerInfo {
  server_id: string;
  server_name: string;
  version: string;
  start: string;
  uptime_ms: number;
  connections: number;
  /** `server`, or `tenant` for a tenant's user (its clients connected now). */
  scope?: 'server' | 'tenant';
  /** The server's only: absent for a tenant's user. */
  total_connections?: number;
  in_msgs: number;
  in_bytes: number;
  out_msgs: number;
  out_bytes: number;
  subscriptions: number;
  /** The server's only: absent for a tenant's user. */
  slow_consumers?: number;
  stations: number;
  max_payload: number;
  auth_required: boolean;
}

export interface ClusterNode {
  name: string;
  addr: string;
  online: boolean;
  voter: boolean;
  /** Meta group id, given by the meta log and never reused; null until given. */
  id: number | null;
  /** Meta log entries behind the leader; known on the leader only. */
  lag: number | null;
  last_seen: string;
  this: boolean;
  client_urls: string[];
}

export interface ClusterView {
  name: string | null;
  meta_leader: string | null;
  meta_role: string;
  meta_applied: number;
  nodes: ClusterNode[];
  dropped_forwards: number;
  /** Replicated stations with fewer replicas online and current than configured. */
  under_replicated: string[];
}

/** A subject list as configured: one subject, a list (allow only these), or
 * allow and deny lists (each one subject or a list; deny wins). */
export type SubjectList = string | string[];
export type RulesConfig = SubjectList | { allow?: SubjectList | null; deny?: SubjectList | null };
/** `true`, or limits on replies per request and how long after it. */
export type ResponsesConfig = boolean | { max?: number | null; expires?: string | number | null };

export interface TenantPermissions {
  publish?: RulesConfig;
  subscribe?: RulesConfig;
  allow_responses?: ResponsesConfig;
}

/** A tenant's user as the broker shows it: never its password. */
export interface TenantUser {
  /** Its name, or its NKey. */
  user: string;
  login: 'password' | 'bcrypt' | 'nkey' | 'certificate' | string;
  /** Absent: it may publish and subscribe to everything. */
  permissions?: TenantPermissions;
}

export interface TenantLimits {
  max_connections?: number;
}

export interface TenantStationLimits {
  max_streams?: number;
  max_consumers?: number;
}

/** `GET /v1/tenants` (operators only). */
export interface TenantInfo {
  name: string;
  /** `default`: `$G` (the users of `[auth]`); `config`: `[[tenants]]` of the
   * configuration file; `api`: made over `PUT /v1/tenants/{name}`. Only `api`
   * tenants can be changed or deleted. */
  source: 'default' | 'config' | 'api';
  /** Its users are the broker's operators. */
  system: boolean;
  users: TenantUser[];
  limits: TenantLimits;
  jetstream: TenantStationLimits;
  exports: string[];
  imports: string[];
  usage: { connections: number; stations: number; consumers: number };
}

/** The body of `PUT /v1/tenants/{name}`: a user without `password` keeps its own. */
export interface TenantSpec {
  users: { user?: string; password?: string; nkey?: string; permissions?: TenantPermissions }[];
  limits: TenantLimits;
  jetstream: TenantStationLimits;
}

export interface PubAck {
  station?: string;
  seq?: number;
  duplicate?: boolean;
  delivered?: number;
}

/** An error answer: `{"error":{"code","message"}}`, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
  /** The route does not exist on this broker (a feature it does not provide yet). */
  get missingRoute(): boolean {
    return this.status === 404 && (this.code === 'route_not_found' || this.code === '');
  }
}

// Credentials, kept for the browser session only.
const AUTH_KEY = 'junction.auth';
let authorization: string | null = safeSession(() => sessionStorage.getItem(AUTH_KEY));
const authListeners = new Set<() => void>();
let unauthorized = false;

function safeSession<T>(f: () => T): T | null {
  try {
    return f();
  } catch {
    return null;
  }
}

export function currentAuth(): string | null {
  return authorization;
}

/** Whether the last request was refused for missing or wrong credentials. */
export function needsLogin(): boolean {
  return unauthorized;
}

/** The kinds of credentials the broker is configured with, as its last 401 said. */
export type AuthMethod = 'bearer' | 'basic';
let authMethods: AuthMethod[] = [];

export function serverAuthMethods(): AuthMethod[] {
  return authMethods;
}

function noteAuthMethods(data: unknown) {
  const m = (data as { auth_methods?: unknown } | undefined)?.auth_methods;
  if (Array.isArray(m)) authMethods = m.filter((x): x is AuthMethod => x === 'bearer' || x === 'basic');
}

export function onAuthChange(f: () => void): () => void {
  authListeners.add(f);
  return () => authListeners.delete(f);
}

function authChanged() {
  authListeners.forEach((f) => f());
}

/** Sets (or clears, with null) the `Authorization` header value. */
export function setAuth(value: string | null) {
  authorization = value;
  unauthorized = false;
  safeSession(() =>
    value ? sessionStorage.setItem(AUTH_KEY, value) : sessionStorage.removeItem(AUTH_KEY),
  );
  authChanged();
}

export function bearer(token: string): string {
  return `Bearer ${token}`;
}

export function basic(user: string, pass: string): string {
  const bytes = new TextEncoder().encode(`${user}:${pass}`);
  let s = '';
  bytes.forEach((b) => (s += String.fromCharCode(b)));
  return `Basic ${btoa(s)}`;
}

export interface RequestOptions {
  body?: unknown;
  raw?: BodyInit;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Do not raise the login screen on 401 (the login form itself). */
  quiet401?: boolean;
}

export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  // X-Requested-With: the broker then leaves out its `Basic` challenge on a 401, so
  // the browser does not pop up its own login dialog over the console's.
  const headers: Record<string, string> = {
    Accept: 'application/json',
    'X-Requested-With': 'XMLHttpRequest',
    ...opts.headers,
  };
  if (authorization) headers.Authorization = authorization;
  let body: BodyInit | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['Content-Type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body, signal: opts.signal });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `The broker did not answer (${(e as Error).message}).`);
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (res.status === 401) {
    // The body names the kinds of credentials the broker takes; the sign-in form
    // (raised here) offers that one first.
    noteAuthMethods(data);
    if (!opts.quiet401 && !unauthorized) {
      unauthorized = true;
      authChanged();
    }
  }
  if (!res.ok) {
    const err = (data as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(res.status, err?.code ?? '', err?.message ?? `${res.status} ${res.statusText}`);
  }
  return data as T;
}

export const get = <T>(path: string, signal?: AbortSignal) => request<T>('GET', path, { signal });

const enc = encodeURIComponent;

/** Stored messages carry their lineage only on request (docs/lineage.md); the
 * console shows it beside the producer's own headers. */
export const WITH_LINEAGE: Record<string, string> = { 'Junction-Lineage': 'true' };

export const api = {
  server: () => get<ServerInfo>('/v1/server'),
  cluster: () => get<ClusterView>('/v1/cluster'),
  stations: () => get<{ stations: Station[] }>('/v1/stations').then((r) => r.stations),
  station: (name: string) => get<Station>(`/v1/stations/${enc(name)}`),
  createStation: (def: object) => request<Station>('POST', '/v1/stations', { body: def }),
  /** A station's definition for a PUT: its JSON without the read-only fields. */
  definitionOf: (s: Station): Record<string, unknown> => {
    const def: Record<string, unknown> = { ...s };
    for (const k of STATION_STATE_FIELDS) delete def[k];
    return def;
  },
  updateStation: (name: string, def: object) =>
    request<Station>('PUT', `/v1/stations/${enc(name)}`, { body: def }),
  deleteStation: (name: string) => request<void>('DELETE', `/v1/stations/${enc(name)}`),
  /** Hands a replicated station's leadership to another replica. */
  stepDown: (name: string) => request<{ asked: string }>('POST', `/v1/stations/${enc(name)}/stepdown`, { body: {} }),
  /** Moves a replicated station's replica off `peer` to a spare node. */
  peerRemove: (name: string, peer: string) =>
    request<unknown>('POST', `/v1/stations/${enc(name)}/peer-remove`, { body: { peer } }),
  purgeStation: (name: string, body: object = {}) =>
    request<{ purged: number }>('POST', `/v1/stations/${enc(name)}/purge`, { body }),
  browse: (name: string, q: { from_seq?: number; from_time?: string; limit?: number; subject?: string }) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') p.set(k, String(v));
    return request<Browse>('GET', `/v1/stations/${enc(name)}/messages?${p}`, { headers: WITH_LINEAGE });
  },
  message: (name: string, seq: number) =>
    request<StoredMessage>('GET', `/v1/stations/${enc(name)}/messages/${seq}`, { headers: WITH_LINEAGE }),
  publishToStation: (name: string, subject: string, payload: string, headers: Record<string, string>) =>
    request<PubAck>('POST', `/v1/stations/${enc(name)}/messages?subject=${enc(subject)}`, {
      raw: payload,
      headers: { 'Content-Type': 'application/octet-stream', ...headers },
    }),
  groups: (name: string) => get<{ groups: Group[] }>(`/v1/stations/${enc(name)}/groups`).then((r) => r.groups),
  createGroup: (name: string, def: object) =>
    request<Group>('POST', `/v1/stations/${enc(name)}/groups`, { body: def }),
  deleteGroup: (name: string, group: string) =>
    request<void>('DELETE', `/v1/stations/${enc(name)}/groups/${enc(group)}`),
  schemas: () => get<{ schemas: Schema[] }>('/v1/schemas').then((r) => r.schemas),
  schema: (name: string) => get<Schema>(`/v1/schemas/${enc(name)}`),
  connections: () => get<{ connections: Connection[] }>('/v1/connections').then((r) => r.connections),
  events: (q: EventQuery = {}) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') p.set(k, String(v));
    return get<{ events: SystemEvent[] }>(`/v1/events?${p}`).then((r) => r.events);
  },
  /** `quiet401`: the header's badge polls it and must not raise the login screen. */
  alarms: (quiet401 = false) =>
    request<{ alarms: Alarm[] }>('GET', '/v1/alarms', { quiet401 }).then((r) => r.alarms),
  /** Operators only. */
  webhooks: () => get<{ webhooks: Webhook[] }>('/v1/notifications/webhooks').then((r) => r.webhooks),
  /** 201 when made, 200 when replaced; 409 `webhook_read_only`, 422 `invalid_config`. */
  putWebhook: (name: string, config: WebhookConfig) =>
    request<Webhook>('PUT', `/v1/notifications/webhooks/${enc(name)}`, { body: config }),
  deleteWebhook: (name: string) => request<void>('DELETE', `/v1/notifications/webhooks/${enc(name)}`),
  testWebhook: (name: string) =>
    request<WebhookTest>('POST', `/v1/notifications/webhooks/${enc(name)}/test`, { body: {} }),
  disconnect: (cid: number) => request<void>('DELETE', `/v1/connections/${cid}`),
  /** Operators only: anyone else gets 403 `forbidden`. `quiet401` for the probe
   * that decides whether the navigation shows Tenants. */
  tenants: (quiet401 = false) =>
    request<{ tenants: TenantInfo[] }>('GET', '/v1/tenants', { quiet401 }).then((r) => r.tenants),
  /** 201 when made, 200 when replaced. */
  putTenant: (name: string, spec: TenantSpec) => request<TenantInfo>('PUT', `/v1/tenants/${enc(name)}`, { body: spec }),
  deleteTenant: (name: string) => request<void>('DELETE', `/v1/tenants/${enc(name)}`),
  metrics: async (): Promise<string> => {
    // With auth on, /metrics takes the API's credentials too ([http] monitoring_auth).
    const headers: Record<string, string> = { 'X-Requested-With': 'XMLHttpRequest' };
    if (authorization) headers.Authorization = authorization;
    const res = await fetch('/metrics', { headers });
    if (!res.ok) throw new ApiError(res.status, '', `metrics: ${res.status}`);
    return res.text();
  },
};

/** Message headers for a publish: `X-Junction-Header-<Name>` per header. */
export function publishHeaders(headers: [string, string][], idempotencyKey?: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of headers) out[`X-Junction-Header-${k}`] = v;
  if (idempotencyKey) out['Idempotency-Key'] = idempotencyKey;
  return out;
}
