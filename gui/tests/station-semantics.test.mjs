// End-to-end: schemas, dead letters and lineage in the console, against a real
// broker with MQTT on. One story, in order: a schema is created and attached in
// the browser, an MQTT producer breaks it, the violation shows in the station's
// dead-letter page with its reason, the resend fails while the schema still
// refuses and succeeds after a new version, and the lineage page shows the
// producer → station → group edges and the message's journey.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { launchBrowser, newPage, screenshot, startBroker } from './harness.mjs';

const V1 = {
  type: 'object',
  required: ['amount'],
  properties: { amount: { type: 'number' } },
};
const V2 = {
  type: 'object',
  required: ['amount'],
  properties: { amount: { type: ['number', 'string'] } },
};

describe('schemas, dead letters and lineage against a real broker', () => {
  let broker;
  let browser;
  let page;
  let producer;
  const errors = [];
  const api = async (method, path, body) => {
    const res = await fetch(`${broker.url}${path}`, {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };

  before(async () => {
    broker = await startBroker([], { mqtt: true });
    browser = await launchBrowser();
    page = await newPage(browser, errors);
    producer = await mqtt.connectAsync(broker.mqtt, {
      clientId: 'gui-mqtt-producer',
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
  });

  after(async () => {
    await producer?.endAsync();
    await browser?.close();
    await broker?.stop();
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test('a schema is created on the schemas page and attached to a station', async () => {
    const created = await api('POST', '/v1/stations', { name: 'payments', subjects: ['payments.>'] });
    assert.equal(created.status, 201);

    await page.goto(`${broker.url}/schemas`);
    await page.getByRole('heading', { level: 1, name: 'Schemas' }).waitFor();
    await page.getByTestId('no-schemas').waitFor();
    await page.getByRole('button', { name: 'Create schema' }).click();
    await page.getByLabel('Name').fill('payment');
    await page.getByLabel('JSON Schema').fill(JSON.stringify(V1, null, 2));
    await page.getByRole('button', { name: 'Save' }).click();
    await page.waitForURL(/schema=payment/);
    const detail = page.getByTestId('schema-detail');
    await detail.getByRole('heading', { name: /payment \(json, active v1\)/ }).waitFor();

    const attach = page.getByRole('form', { name: 'Attach to a station' });
    await attach.getByLabel('Station').selectOption('payments');
    await attach.getByRole('button', { name: 'Attach' }).click();
    await attach.getByText('Attached payment (active version) to payments.').waitFor();
    await page.getByTestId('schemas-table').getByRole('link', { name: 'payments' }).waitFor();
    await screenshot(page, 'schemas');

    // The station's edit form shows the schema and turns on its dead-letter station.
    await page.goto(`${broker.url}/stations/payments`);
    await page.getByRole('button', { name: 'Edit', exact: true }).click();
    const form = page.getByTestId('station-form');
    assert.equal(await form.locator('#sf-schema').inputValue(), 'payment');
    await form.getByLabel('Schema violations').check();
    await screenshot(page, 'station-edit-schema-dls');
    await form.getByRole('button', { name: 'Save changes' }).click();
    await form.waitFor({ state: 'detached' });
    const station = (await api('GET', '/v1/stations/payments')).body;
    assert.equal(station.schema, 'payment');
    assert.equal(station.schema_version, null);
    assert.equal(station.dead_letter.schema_violation, true);
    assert.equal(station.dead_letter_station, '$dls_payments');
  });

  test('an MQTT publish the schema refuses shows in the dead-letter page with its reason', async () => {
    await producer.publishAsync('payments/card', JSON.stringify({ amount: 12.5 }), { qos: 1 });
    // MQTT 5 refuses with reason 0x99 (payload format invalid).
    await assert.rejects(
      producer.publishAsync('payments/card', JSON.stringify({ amount: 'ten' }), { qos: 1 }),
      /Payload format invalid/,
    );

    await page.goto(`${broker.url}/stations/payments`);
    await page.getByTestId('messages-table').getByText('{"amount":12.5}').waitFor();
    await page.getByRole('link', { name: 'Dead letters' }).click();
    await page.getByRole('heading', { level: 1, name: 'Dead letters of payments' }).waitFor();
    const reason = page.getByTestId('dls-table').getByTestId('dls-reason');
    await reason.getByText('schema violation').waitFor();
    assert.match(await reason.innerText(), /\/amount: "ten" is not of type "number"/);
    await page.getByTestId('dls-table').getByText('payments.card').waitFor();
    await screenshot(page, 'dead-letters');

    // The stations list shows the schema and the dead-letter count, linked.
    await page.goto(`${broker.url}/stations`);
    const row = page.getByTestId('stations-table').getByRole('row', { name: /payments/ });
    await row.getByRole('link', { name: 'payment', exact: true }).waitFor();
    await row.getByRole('link', { name: '1', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Dead letters of payments' }).waitFor();
    await screenshot(page, 'stations-schema-dls');
  });

  test('a resend fails while the schema refuses, and completes after a new version', async () => {
    await page.getByLabel('Select dead letter 1').check();
    await page.getByRole('button', { name: 'Resend selected (1)' }).click();
    const progress = page.getByTestId('resend-progress');
    await progress.getByText('Resend finished').waitFor();
    assert.match(await progress.getByTestId('resend-counts').innerText(), /1\/1 · 0 redelivered · 0 republished · 1 failed/);
    await progress.getByText(/1: message does not match schema 'payment'/).waitFor();
    await page.getByLabel('Select dead letter 1').waitFor(); // it stays

    // A new version that accepts the message, through the schemas page.
    await page.goto(`${broker.url}/schemas?schema=payment`);
    const detail = page.getByTestId('schema-detail');
    await detail.getByRole('button', { name: 'New version' }).click();
    await detail.getByLabel('JSON Schema').fill(JSON.stringify(V2, null, 2));
    await detail.getByRole('button', { name: 'Save' }).click();
    await detail.getByText('Added v2; it is now the active version.').waitFor();
    // The diff of v1 → v2 shows the changed type.
    await detail.locator('pre.diff .del', { hasText: '"type": "number"' }).waitFor();
    await detail.locator('pre.diff .ins', { hasText: '"string"' }).waitFor();

    await page.goto(`${broker.url}/stations/payments/dls`);
    await page.getByRole('button', { name: 'Resend all' }).click();
    await page.getByTestId('resend-progress').getByText('Resend finished').waitFor();
    assert.match(
      await page.getByTestId('resend-counts').innerText(),
      /1\/1 · 0 redelivered · 1 republished · 0 failed/,
    );
    await page.getByTestId('no-dead-letters').waitFor();
    await screenshot(page, 'dead-letters-resent');
    const stored = (await api('GET', '/v1/stations/payments/messages')).body.messages;
    assert.deepEqual(
      stored.map((m) => m.payload),
      ['{"amount":12.5}', '{"amount":"ten"}'],
    );

    // Roll back to v1 from the page: the broker's active version follows.
    await page.goto(`${broker.url}/schemas?schema=payment`);
    await page.getByRole('button', { name: 'Roll back to v1' }).click();
    await page.getByText('v1 is now the active version.').waitFor();
    assert.equal((await api('GET', '/v1/schemas/payment')).body.active_version, 1);
    await screenshot(page, 'schemas-versions');
  });

  test('a dead letter is dropped', async () => {
    await assert.rejects(producer.publishAsync('payments/card', '{"amount":"again"}', { qos: 1 }), /Payload format invalid/);
    await page.goto(`${broker.url}/stations/payments/dls`);
    await page.getByLabel('Select dead letter 2').check();
    await page.getByRole('button', { name: 'Drop selected' }).click();
    await page.getByText('Dropped 1 of 1.').waitFor();
    await page.getByTestId('no-dead-letters').waitFor();
    assert.equal((await api('GET', '/v1/stations/payments/dls/messages')).body.messages.length, 0);
  });

  test('the lineage graph shows producer → station → group, and a message journey', async () => {
    // Lineage headers reach a consumer only when its group asks (docs/lineage.md).
    assert.equal((await api('POST', '/v1/stations/payments/groups', { name: 'billing', lineage_headers: true })).status, 201);
    const fetched = await api('POST', '/v1/stations/payments/groups/billing/fetch', { batch: 1 });
    assert.equal(fetched.status, 200);
    const msgId = fetched.body.messages[0].headers['Junction-Msg-Id'];
    assert.match(msgId, /^[0-9a-f]{32}$/);

    await page.goto(`${broker.url}/lineage`);
    const graph = page.getByTestId('lineage-graph');
    await graph.waitFor();
    await graph.locator('.edge[data-from="producer:mqtt:gui-mqtt-producer"][data-to="station:payments"]').waitFor();
    await graph.locator('.edge[data-from="station:payments"][data-to="group:payments/billing"]').waitFor();
    await graph.locator('.node.producer', { hasText: 'gui-mqtt-producer' }).waitFor();
    await graph.locator('.node.group', { hasText: 'billing' }).waitFor();
    // Rates and counts ride on the edges.
    assert.match(
      await graph.locator('.edge[data-to="group:payments/billing"] .edge-label').textContent(),
      /\/s · 1$/,
    );
    await screenshot(page, 'lineage');

    // The journey, reached from the message view's link.
    await page.goto(`${broker.url}/stations/payments?seq=1`);
    await page.getByRole('link', { name: "This message's journey" }).click();
    await page.waitForURL(new RegExp(`/lineage\\?id=${msgId}`));
    const journey = page.getByTestId('journey');
    await journey.getByText('gui-mqtt-producer').waitFor();
    await journey.getByText('payments.card').waitFor();
    await journey.getByText(/delivered to group billing/).waitFor();
    await journey.getByRole('link', { name: '#1' }).waitFor();
    await screenshot(page, 'lineage-journey');
  });
});
