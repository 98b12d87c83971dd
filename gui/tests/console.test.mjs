// End-to-end: the console served by a real broker, in headless Chromium.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { connect, headers as natsHeaders } from 'nats';
import { launchBrowser, newPage, screenshot, startBroker } from './harness.mjs';

describe('console against a broker without auth', () => {
  let broker;
  let browser;
  let page;
  const errors = [];

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

  test('overview loads with live figures and charts', async () => {
    await page.goto(`${broker.url}/`);
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page.getByTestId('overview-cards').waitFor();
    await page.getByText('Messages in per second, by protocol').waitFor();
    await page.locator('.uplot').first().waitFor();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Overview' }).waitFor();
    await screenshot(page, 'overview');
  });

  test('a station is created through the form, with inline and server errors shown', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Stations' }).click();
    await page.getByRole('heading', { level: 1, name: 'Stations' }).waitFor();
    await page.getByTestId('no-stations').waitFor();
    await page.getByRole('button', { name: 'Create station' }).click();
    const form = page.getByTestId('station-form');

    // Inline validation: refused before anything is sent.
    await form.getByLabel('Name').fill('bad name');
    await form.getByRole('button', { name: 'Create station' }).click();
    await form.getByText('No spaces, dots').waitFor();

    await form.getByLabel('Name').fill('orders');
    await form.getByLabel(/^Subjects/).fill('orders.>');
    await form.getByLabel('Description').fill('created by the browser test');
    await form.getByRole('button', { name: 'Create station' }).click();
    await page.waitForURL(`${broker.url}/stations/orders`);
    await page.getByRole('heading', { level: 1, name: 'orders' }).waitFor();

    // A server error is shown as the broker said it: overlapping subjects.
    await page.goto(`${broker.url}/stations?new=1`);
    const again = page.getByTestId('station-form');
    await again.getByLabel('Name').fill('orders_copy');
    await again.getByLabel(/^Subjects/).fill('orders.eu');
    await again.getByRole('button', { name: 'Create station' }).click();
    const serverError = again.getByTestId('server-error');
    await serverError.waitFor();
    assert.match(await serverError.innerText(), /subjects_overlap/);
    await screenshot(page, 'stations-form-error');
    await again.getByRole('button', { name: 'Cancel' }).click();
    await page.getByTestId('stations-table').getByRole('link', { name: 'orders' }).waitFor();
    await screenshot(page, 'stations');
  });

  test('messages published over NATS, HTTP and MQTT appear in the live tail', async () => {
    await page.goto(`${broker.url}/stations/orders`);
    await page.getByRole('heading', { level: 1, name: 'orders' }).waitFor();
    await page.getByTestId('no-messages').waitFor();

    const nc = await connect({ servers: broker.nats, name: 'gui-test-publisher' });
    let mq;
    let mqWs;
    try {
      const h = natsHeaders();
      h.set('Trace-Id', 'nats-trace-1');
      nc.publish('orders.nats', new TextEncoder().encode(JSON.stringify({ via: 'nats', n: 1 })), { headers: h });
      nc.publish('orders.binary', new Uint8Array([0, 1, 2, 255]));
      await nc.flush();

      const res = await fetch(`${broker.url}/v1/subjects/orders.http`, {
        method: 'POST',
        headers: { 'X-Junction-Header-Source': 'fetch' },
        body: 'hello from http',
      });
      assert.equal(res.status, 201);

      const table = page.getByTestId('messages-table');
      await table.getByText('orders.nats').waitFor();
      await table.getByText('orders.binary').waitFor();
      await table.getByText('hello from http').waitFor();

      // MQTT 5 over TCP and MQTT 3.1.1 over the WebSocket at /mqtt, QoS 1 (acked once stored).
      mq = await mqtt.connectAsync(broker.mqtt, { clientId: 'gui-test-mqtt', protocolVersion: 5, reconnectPeriod: 0 });
      await mq.publishAsync('orders/mqtt', JSON.stringify({ via: 'mqtt' }), { qos: 1 });
      mqWs = await mqtt.connectAsync(`${broker.url.replace('http', 'ws')}/mqtt`, {
        clientId: 'gui-test-mqtt-ws',
        protocolVersion: 4,
        reconnectPeriod: 0,
      });
      await mqWs.publishAsync('orders/mqtt-ws', 'hello from mqtt over websocket', { qos: 1 });
      await table.getByText('orders.mqtt', { exact: true }).waitFor();
      await table.getByText('hello from mqtt over websocket').waitFor();

      // The produce form publishes too.
      const produce = page.getByTestId('produce-form');
      await produce.getByLabel('Subject').fill('orders.form');
      await produce.getByLabel('Payload').fill('{"via":"form"}');
      await produce.getByRole('button', { name: 'Send' }).click();
      await produce.getByText('Stored as #6').waitFor();
      await table.getByText('orders.form').waitFor();

      // The connections page lists the NATS and MQTT clients, each with its protocol.
      await screenshot(page, 'station-live-tail');
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Connections' }).click();
      const connections = page.getByTestId('connections-table');
      await connections.getByText('gui-test-publisher').waitFor();
      // The HTTP gateway's client is the broker's own: hidden unless asked for.
      assert.equal(await connections.getByText('junction-http').count(), 0);
      for (const name of ['gui-test-mqtt', 'gui-test-mqtt-ws']) {
        const row = connections.getByRole('row').filter({ has: page.getByRole('cell', { name, exact: true }) });
        assert.equal(await row.locator('.badge').innerText(), 'mqtt');
      }
      await screenshot(page, 'connections');
      await page.goto(`${broker.url}/connections?protocol=mqtt`);
      await connections.getByText('gui-test-mqtt-ws').waitFor();
      assert.equal(await connections.getByText('gui-test-publisher').count(), 0, 'the protocol filter leaves NATS out');
    } finally {
      await nc.close();
      await mq?.endAsync();
      await mqWs?.endAsync();
    }
  });

  test('a message opens with pretty JSON, hex and headers, at a linkable URL', async () => {
    await page.goto(`${broker.url}/stations/orders`);
    await page.getByRole('link', { name: 'Open message 1' }).click();
    await page.waitForURL(/seq=1/);
    const view = page.getByTestId('message-view');
    await view.getByRole('heading', { name: 'Message #1' }).waitFor();
    const payload = view.getByTestId('payload');
    assert.equal(await payload.innerText(), JSON.stringify({ via: 'nats', n: 1 }, null, 2));
    await view.getByText('nats-trace-1').waitFor();
    await view.getByRole('tab', { name: 'Hex' }).click();
    assert.match(await payload.innerText(), /^00000000  7b 22 76 69 61/);
    await screenshot(page, 'message');

    // Reloading the deep link shows the same message; binary payloads default to hex.
    await page.goto(`${broker.url}/stations/orders?seq=2`);
    const binary = page.getByTestId('message-view').getByTestId('payload');
    await page.getByRole('heading', { name: 'Message #2' }).waitFor();
    assert.match(await binary.innerText(), /00 01 02 ff/);
  });

  test('consumer groups show lag', async () => {
    const res = await fetch(`${broker.url}/v1/stations/orders/groups`, {
      method: 'POST',
      body: JSON.stringify({ name: 'billing' }),
    });
    assert.equal(res.status, 201);
    await page.goto(`${broker.url}/stations/orders`);
    const row = page.getByTestId('groups-table').getByRole('row', { name: /billing/ });
    await row.waitFor();
    assert.match(await row.innerText(), /billing[\s\S]*\b6\b/);
    await screenshot(page, 'station-groups');
  });

  test('deep links survive a reload and API paths keep their JSON 404', async () => {
    await page.goto(`${broker.url}/connections?protocol=nats`);
    await page.getByRole('heading', { level: 1, name: 'Connections' }).waitFor();
    await page.goto(`${broker.url}/no/such/page`);
    await page.getByRole('heading', { level: 1, name: 'Page not found' }).waitFor();
    const api404 = await fetch(`${broker.url}/v1/no/such/route`);
    assert.equal(api404.status, 404);
    assert.equal((await api404.json()).error.code, 'route_not_found');
    const varz = await fetch(`${broker.url}/varz`);
    assert.equal(varz.status, 200);
  });

  test('a station is edited, then deleted after typing its name', async () => {
    await page.goto(`${broker.url}/stations/orders`);
    await page.getByRole('button', { name: 'Edit', exact: true }).click();
    const form = page.getByTestId('station-form');
    await form.getByLabel('Description').fill('edited in the browser');
    await form.getByLabel('Max messages').fill('many');
    await form.getByRole('button', { name: 'Save changes' }).click();
    await form.getByText('Max messages must be a whole number').waitFor();
    await form.getByLabel('Max messages').fill('1000');
    await form.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('edited in the browser').waitFor();
    const res = await fetch(`${broker.url}/v1/stations/orders`);
    const station = await res.json();
    assert.equal(station.description, 'edited in the browser');
    assert.equal(station.retention.max_msgs, 1000);
    assert.equal(station.state.messages, 6, 'editing keeps the messages');

    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    const dialog = page.getByRole('dialog');
    const confirm = dialog.getByRole('button', { name: 'Delete station' });
    assert.equal(await confirm.isDisabled(), true, 'delete waits for the name to be typed');
    await screenshot(page, 'station-delete-confirm');
    await dialog.getByLabel(/Type orders to confirm/).fill('orders');
    await confirm.click();
    await page.waitForURL(`${broker.url}/stations`);
    await page.getByTestId('no-stations').waitFor();
    assert.equal((await fetch(`${broker.url}/v1/stations/orders`)).status, 404);
  });

  test('the keyboard reaches the content and the navigation', async () => {
    await page.goto(`${broker.url}/`);
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
    await page.keyboard.press('Tab'); // brand
    await page.keyboard.press('Tab'); // Overview
    await page.keyboard.press('Tab'); // Stations
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Stations');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Stations' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/stations');
  });

  test('the dark theme is one click away', async () => {
    await page.goto(`${broker.url}/`);
    const before = await page.evaluate(() => document.documentElement.dataset.theme ?? '');
    await page.getByRole('button', { name: /Switch to (dark|light) theme/ }).click();
    const afterTheme = await page.evaluate(() => document.documentElement.dataset.theme);
    assert.notEqual(afterTheme, before);
    if (afterTheme !== 'dark') await page.getByRole('button', { name: /Switch to dark theme/ }).click();
    await page.getByTestId('overview-cards').waitFor();
    await screenshot(page, 'overview-dark');
  });
});

describe('console against a broker that requires a token', () => {
  let broker;
  let browser;
  const errors = [];

  before(async () => {
    broker = await startBroker(['--auth', 's3cret-token']);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test('shows a login, refuses a wrong token, and works with the right one', async () => {
    const page = await newPage(browser, errors);
    await page.goto(`${broker.url}/stations`);
    await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    await screenshot(page, 'login');
    await page.getByLabel('Token', { exact: true }).fill('wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('The broker refused these credentials.').waitFor();
    await page.getByLabel('Token', { exact: true }).fill('s3cret-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Stations' }).waitFor();
    await page.getByTestId('no-stations').waitFor();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
  });
});
