// End-to-end: an operator disconnects clients from the connections page, and the
// notifications page shows what the broker recorded (the kick, a schema violation).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { connect } from 'nats';
import { launchBrowser, newPage, screenshot, startBroker } from './harness.mjs';

describe('operator actions and the system log', () => {
  let broker;
  let browser;
  let page;
  const errors = [];

  const api = async (method, path, body) => {
    const res = await fetch(`${broker.url}${path}`, {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    return { status: res.status, body: json };
  };

  before(async () => {
    broker = await startBroker([], { mqtt: true });
    browser = await launchBrowser();
    page = await newPage(browser, errors);
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  /** Opens the connections page filtered to `protocol` and disconnects `name`. */
  const disconnect = async (protocol, name) => {
    await page.goto(`${broker.url}/connections?protocol=${protocol}`);
    const table = page.getByTestId('connections-table');
    const row = table.getByRole('row').filter({ has: page.getByRole('cell', { name, exact: true }) });
    await row.waitFor();
    await row.getByRole('button', { name: `Disconnect ${protocol} client ${name}` }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText(`Disconnect ${protocol} client ${name}?`).waitFor();
    return { row, dialog };
  };

  test('an MQTT 5 client is disconnected from the connections page after confirming', async () => {
    const mq = await mqtt.connectAsync(broker.mqtt, {
      clientId: 'gui-kick-mqtt',
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    const reason = new Promise((resolve) => mq.on('disconnect', (packet) => resolve(packet.reasonCode)));
    try {
      // Cancelling leaves it connected.
      let { dialog } = await disconnect('mqtt', 'gui-kick-mqtt');
      await screenshot(page, 'connections-disconnect-confirm');
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      await dialog.waitFor({ state: 'hidden' });
      assert.equal(mq.connected, true, 'still connected after Cancel');

      let row;
      ({ row, dialog } = await disconnect('mqtt', 'gui-kick-mqtt'));
      await dialog.getByRole('button', { name: 'Disconnect', exact: true }).click();
      // MQTT 5: DISCONNECT 0x98, administrative action.
      assert.equal(await reason, 0x98);
      await row.waitFor({ state: 'detached' });
    } finally {
      mq.end(true);
    }
  });

  test('a NATS client is disconnected from the connections page', async () => {
    const nc = await connect({ servers: broker.nats, name: 'gui-kick-nats', reconnect: false });
    const closed = nc.closed();
    const { row, dialog } = await disconnect('nats', 'gui-kick-nats');
    await dialog.getByRole('button', { name: 'Disconnect', exact: true }).click();
    await closed;
    assert.equal(nc.isClosed(), true);
    await row.waitFor({ state: 'detached' });
  });

  test('the notifications page, linked in the navigation, shows the kicks and a schema violation', async () => {
    await page.goto(`${broker.url}/`);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Notifications' }).click();
    await page.getByRole('heading', { level: 1, name: 'Notifications' }).waitFor();
    const table = page.getByTestId('events-table');
    await table.locator('tr[data-kind="client_kicked"]', { hasText: 'gui-kick-mqtt' }).waitFor();
    await table.locator('tr[data-kind="client_kicked"]', { hasText: 'gui-kick-nats' }).waitFor();

    // A schema violation while the page is open shows up on its next refresh.
    assert.equal(
      (await api('POST', '/v1/schemas', { name: 'reading', definition: { type: 'object', required: ['celsius'] } }))
        .status,
      201,
    );
    assert.equal(
      (await api('POST', '/v1/stations', { name: 'sensors', subjects: ['sensors.>'], schema: 'reading' })).status,
      201,
    );
    assert.equal((await api('POST', '/v1/subjects/sensors.kitchen', '{"fahrenheit":70}')).status, 422);
    const violation = table.locator('tr[data-kind="schema_violation"]', { hasText: 'sensors' });
    await violation.waitFor();
    assert.match(await violation.innerText(), /schema 'reading'/);

    // The kind filter keeps only what is asked for, at a linkable URL.
    await page.getByLabel('Kind').selectOption('schema_violation');
    await page.waitForURL(/kind=schema_violation/);
    await table.locator('tr[data-kind="client_kicked"]').first().waitFor({ state: 'detached' });
    await violation.waitFor();
    await screenshot(page, 'events');
  });
});
