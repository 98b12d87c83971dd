// A station's consumer groups: lag, pending, redeliveries; create and delete.
import { useState } from 'preact/hooks';
import { api, ApiError, type Group } from '../api';
import { Confirm } from '../components/Confirm';
import { ErrorNote, Loading } from '../components/Status';
import { ago, duration, num } from '../format';
import { useLoad } from '../hooks';

export function Groups({ station }: { station: string }) {
  const { data, error, reload } = useLoad(() => api.groups(station), [station], 3000);
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<Group>();
  return (
    <section aria-labelledby="groups-title" class="panel">
      <div class="row">
        <h2 id="groups-title">Consumer groups</h2>
        <button type="button" onClick={() => setCreating(true)} disabled={creating}>
          Create group
        </button>
      </div>
      {creating && (
        <GroupForm
          station={station}
          onDone={() => {
            setCreating(false);
            reload();
          }}
        />
      )}
      {error && <ErrorNote error={error} what="Could not list groups" />}
      {!data ? (
        <Loading what="Loading groups" />
      ) : data.length === 0 ? (
        <p class="muted">No consumer groups. JetStream durable consumers, HTTP groups and MQTT persistent sessions appear here.</p>
      ) : (
        <div class="table-wrap">
          <table data-testid="groups-table">
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Delivery</th>
                <th scope="col" class="num">
                  Lag
                </th>
                <th scope="col" class="num">
                  Pending acks
                </th>
                <th scope="col" class="num">
                  Redelivered
                </th>
                <th scope="col" class="num">
                  Waiting pulls
                </th>
                <th scope="col" class="num">
                  Ack floor
                </th>
                <th scope="col">Last active</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {data.map((g) => (
                <tr key={g.name}>
                  <th scope="row">
                    {g.name}
                    {g.description && <div class="muted small">{g.description}</div>}
                  </th>
                  <td class="small">
                    {g.deliver_policy}, ack {g.ack_policy}, wait {duration(g.ack_wait_ms)}, max deliver{' '}
                    {g.max_deliver < 0 ? '∞' : g.max_deliver}
                    {g.filter_subjects.length > 0 && <> · {g.filter_subjects.join(', ')}</>}
                  </td>
                  <td class="num">{num(g.state.lag)}</td>
                  <td class="num">{num(g.state.pending_acks)}</td>
                  <td class="num">{num(g.state.redelivered)}</td>
                  <td class="num">{num(g.state.waiting)}</td>
                  <td class="num">{num(g.state.ack_floor.station_seq)}</td>
                  <td>{ago(g.state.last_active)}</td>
                  <td>
                    <button type="button" class="danger" onClick={() => setDeleting(g)} aria-label={`Delete group ${g.name}`}>
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <p class="muted small">
        Members: the API reports waiting pulls per group, not the individual clients; see Connections for who is
        connected.
      </p>
      {deleting && (
        <Confirm
          title={`Delete group ${deleting.name}?`}
          confirmLabel="Delete group"
          danger
          onClose={() => {
            setDeleting(undefined);
            reload();
          }}
          onConfirm={() => api.deleteGroup(station, deleting.name)}
        >
          <p>Its position and pending acknowledgements are lost; the station's messages stay.</p>
        </Confirm>
      )}
    </section>
  );
}

function GroupForm({ station, onDone }: { station: string; onDone: () => void }) {
  const [name, setName] = useState('');
  const [policy, setPolicy] = useState('all');
  const [ackWait, setAckWait] = useState('30');
  const [maxDeliver, setMaxDeliver] = useState('-1');
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const nameError = name && !/^[^\s.*>/\\]+$/.test(name) ? 'No spaces, dots, *, >, / or \\.' : undefined;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!name || nameError) return;
    setBusy(true);
    setError(undefined);
    try {
      await api.createGroup(station, {
        name,
        deliver_policy: policy,
        ack_wait_ms: Math.round(Number(ackWait) * 1000),
        max_deliver: Number(maxDeliver),
      });
      onDone();
    } catch (err) {
      setError(err as ApiError);
      setBusy(false);
    }
  };
  return (
    <form class="form" onSubmit={submit} aria-label="Create a consumer group">
      <div class="grid3">
        <label>
          Name
          <input required value={name} onInput={(e) => setName(e.currentTarget.value)} aria-invalid={nameError ? true : undefined} />
          {nameError && <small class="field-error">{nameError}</small>}
        </label>
        <label>
          Start at
          <select value={policy} onChange={(e) => setPolicy(e.currentTarget.value)}>
            <option value="all">all stored messages</option>
            <option value="new">new messages only</option>
            <option value="last">the last message</option>
          </select>
        </label>
        <label>
          Ack wait (s)
          <input inputMode="decimal" value={ackWait} onInput={(e) => setAckWait(e.currentTarget.value)} />
        </label>
        <label>
          Max deliveries
          <input inputMode="numeric" value={maxDeliver} onInput={(e) => setMaxDeliver(e.currentTarget.value)} />
          <small class="muted">-1 is unlimited</small>
        </label>
      </div>
      {error && <ErrorNote error={error} what="The broker refused the group" />}
      <div class="actions">
        <button type="button" onClick={onDone}>
          Cancel
        </button>
        <button type="submit" class="primary" disabled={busy || !name || !!nameError}>
          Create group
        </button>
      </div>
    </form>
  );
}
