// End-to-end: the Notifications page. Events recorded before a broker restart
// are shown after it; the filters (kind, severity, station, client) reach the
// URL and the query; a failing webhook's alarm shows in every page's alarm
// badge and on the page; a webhook added in the page's form shows its health,
// and "Send test" reaches a receiver this test runs on 127.0.0.1.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from 'nats';
import { launchBrowser, newPage, screenshot, startBroker } from './harness.mjs';

/** A webhook receiver on 127.0.0.1: records every POST and answers 200. */
async function startReceiver() {
  const hits = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      let json = null;
      try {
        json = JSON.parse(body);
      } catch {
        /* recorded as null */
      }
      hits.push({ headers: req.headers, body: json });
      res.writeHead(200).end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    hits,
    close: () => new Promise((r) => server.close(r)),
  };
}

/** A loopback port nothing listens on (bound, then let go). */
async function closedPort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Polls `f` until it returns something truthy (a guard against hangs only). */
async function until(what, f, got = () => undefined) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}; got ${JSON.stringify(got())}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the notifications page', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'junction-gui-notify-'));
  let broker;
  let browser;
  let page;
  let receiver;
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

  /** A publish that fails station `sensors`' schema: a `schema_violation` event. */
  const violate = async () => assert.equal((await api('POST', '/v1/subjects/sensors.kitchen', '{"fahrenheit":70}')).status, 422);

  const table = () => page.getByTestId('events-table');
  const row = (kind, text) => table().locator(`tr[data-kind="${kind}"]`, text ? { hasText: text } : {});

  before(async () => {
    receiver = await startReceiver();
    broker = await startBroker([], { dataDir });
    browser = await launchBrowser();
    page = await newPage(browser, errors);
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
    await receiver?.close();
    rmSync(dataDir, { recursive: true, force: true });
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test('events recorded before a restart are on the page after it', async () => {
    assert.equal(
      (await api('POST', '/v1/schemas', { name: 'reading', definition: { type: 'object', required: ['celsius'] } })).status,
      201,
    );
    assert.equal((await api('POST', '/v1/stations', { name: 'sensors', subjects: ['sensors.>'], schema: 'reading' })).status, 201);
    await violate();
    const nc = await connect({ servers: broker.nats, name: 'gui-notify-nats', reconnect: false });
    await nc.flush();
    await nc.close();
    // Events are recorded off the publish path: wait until they are readable.
    let seen = [];
    await until('the client and the violation in /v1/events', async () => {
      const { body } = await api('GET', '/v1/events?limit=1000');
      seen = body.events.map((e) => `${e.kind} client=${e.client_name} station=${e.station}`);
      return (
        seen.some((e) => e.startsWith('client_disconnected client=gui-notify-nats')) &&
        seen.some((e) => e.startsWith('schema_violation') && e.endsWith('station=sensors'))
      );
    }, () => seen);

    await broker.stop();
    broker = await startBroker([], { dataDir });

    await page.goto(`${broker.url}/notifications`);
    await page.getByRole('heading', { level: 1, name: 'Notifications' }).waitFor();
    const violation = row('schema_violation', 'sensors');
    await violation.waitFor();
    assert.match(await violation.innerText(), /schema 'reading'/);
    assert.equal(await violation.getAttribute('data-severity'), 'warning');
    await violation.locator('[data-severity="warning"]').waitFor();
    await row('client_connected', 'gui-notify-nats').waitFor();
    await row('client_disconnected', 'gui-notify-nats').waitFor();
    await row('server_stopping').first().waitFor();
    await row('server_started').first().waitFor();
    await screenshot(page, 'notifications-after-restart');
  });

  test('the kind, severity, station and client filters reach the query', async () => {
    await page.goto(`${broker.url}/notifications`);
    await row('schema_violation', 'sensors').waitFor();

    await page.getByRole('combobox', { name: 'Severity' }).selectOption('warning');
    await page.waitForURL(/severity=warning/);
    await row('client_connected').first().waitFor({ state: 'detached' });
    await row('schema_violation', 'sensors').waitFor();
    for (const s of await table().locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.severity))) {
      assert.notEqual(s, 'info', 'only warnings or worse');
    }
    await page.getByRole('combobox', { name: 'Severity' }).selectOption('');

    const station = page.getByRole('searchbox', { name: 'Station' });
    await station.fill('sensors');
    await station.press('Enter');
    await page.waitForURL(/station=sensors/);
    await row('client_connected').first().waitFor({ state: 'detached' });
    await row('schema_violation', 'sensors').waitFor();
    await station.fill('');
    await station.press('Enter');
    await page.waitForURL((u) => !u.search.includes('station='));

    const client = page.getByRole('searchbox', { name: 'Client' });
    await client.fill('gui-notify-nats');
    await client.press('Enter');
    await page.waitForURL(/client=gui-notify-nats/);
    await row('schema_violation').first().waitFor({ state: 'detached' });
    await row('client_connected', 'gui-notify-nats').waitFor();
    await row('client_disconnected', 'gui-notify-nats').waitFor();

    await page.getByRole('combobox', { name: 'Kind' }).selectOption('client_disconnected');
    await page.waitForURL(/kind=client_disconnected/);
    await row('client_connected').first().waitFor({ state: 'detached' });
    await row('client_disconnected', 'gui-notify-nats').waitFor();
    await screenshot(page, 'notifications-filtered');

    // A filter nothing passes says so.
    await page.goto(`${broker.url}/notifications?station=no-such-station`);
    await page.getByTestId('no-events').waitFor();
    assert.match(await page.getByTestId('no-events').innerText(), /No event matches/);
  });

  test('a failing webhook raises an alarm that the badge on every page counts', async () => {
    const gone = `http://127.0.0.1:${await closedPort()}/gone`;
    const made = await api('PUT', '/v1/notifications/webhooks/gone', { url: gone, kinds: ['schema_violation'], max_attempts: 1 });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    await page.goto(`${broker.url}/stations`);
    await violate();
    const badge = page.getByTestId('alarm-badge');
    await badge.waitFor();
    assert.equal(await badge.getAttribute('aria-label'), '1 active alarm');
    assert.match(await badge.innerText(), /1/);
    await screenshot(page, 'alarm-badge');
    await badge.click();
    await page.waitForURL(/\/notifications$/);
    const alarm = page.getByTestId('alarms').locator('li[data-alarm="webhook_failing:gone"]');
    await alarm.waitFor();
    assert.match(await alarm.innerText(), /webhook 'gone' gave up/);
    // Its health says why.
    const goneRow = page.getByTestId('webhooks-table').locator('tr[data-webhook="gone"]');
    await goneRow.locator('td[data-health="dead_lettered"]', { hasText: /^1$/ }).waitFor();
    assert.match(await goneRow.innerText(), new RegExp(gone.replace(/[/.]/g, '\\$&')));
  });

  test('a webhook added in the form shows its health, and "send test" reaches the receiver', async () => {
    await page.goto(`${broker.url}/notifications`);
    await page.getByRole('button', { name: 'Add a webhook' }).click();
    const form = page.getByRole('form', { name: 'New webhook' });
    await form.getByLabel('Name').fill('gui-hook');
    await form.getByLabel('URL').fill(receiver.url);
    await form.getByLabel('Kinds').fill('schema_violation');
    await form.getByRole('button', { name: 'Save webhook' }).click();
    await form.waitFor({ state: 'detached' });
    const hookRow = page.getByTestId('webhooks-table').locator('tr[data-webhook="gui-hook"]');
    await hookRow.waitFor();
    assert.match(await hookRow.innerText(), /schema_violation/);

    // An event it wants is delivered, and its health counts it.
    await violate();
    await until('the violation at the receiver', () => receiver.hits.some((h) => h.body?.kind === 'schema_violation'));
    await hookRow.locator('td[data-health="delivered"]', { hasText: /^1$/ }).waitFor();
    await hookRow.locator('td[data-health="pending"]', { hasText: /^0$/ }).waitFor();

    await hookRow.getByRole('button', { name: 'Send test to gui-hook' }).click();
    const outcome = hookRow.getByTestId('test-outcome');
    await outcome.waitFor();
    assert.equal(await outcome.innerText(), 'Receiver answered 200');
    const test = await until('the test event at the receiver', () => receiver.hits.find((h) => h.body?.kind === 'test'));
    assert.match(test.body.message, /gui-hook/);
    assert.equal(test.headers['junction-event-id'], test.body.event_id);
    await screenshot(page, 'notifications-webhooks');
  });
});
