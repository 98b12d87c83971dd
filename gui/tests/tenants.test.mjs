// End-to-end: a tenant's user signs in to the console and sees only its
// tenant's stations; the other tenant's are invisible, and the overview works
// without the server-wide figures that are the operators'; its Notifications
// page shows its events and the alarms, without the operators' webhooks.
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from 'nats';
import { launchBrowser, newPage, screenshot, startBroker } from './harness.mjs';

const CONFIG = `
[[tenants]]
name = "acme"
users = [{ user = "alice", password = "alice-pw" }]

[[tenants]]
name = "globex"
users = [{ user = "bob", password = "bob-pw" }]
`;

async function createStation(url, user, pass, name) {
  const res = await fetch(`${url}/v1/stations`, {
    method: 'POST',
    headers: {
      Authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
      'Content-Type': 'application/json',
    },
    body: JSON.stringify({ name }),
  });
  assert.equal(res.status, 201, `${user} creates ${name}: ${await res.text()}`);
}

describe("console for a tenant's user", () => {
  let broker;
  let browser;
  const errors = [];

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'junction-gui-tenants-'));
    const file = join(dir, 'tenants.toml');
    writeFileSync(file, CONFIG);
    broker = await startBroker(['-c', file]);
    browser = await launchBrowser();
    await createStation(broker.url, 'alice', 'alice-pw', 'acme-orders');
    await createStation(broker.url, 'bob', 'bob-pw', 'globex-orders');
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test("signs in with a user and password and lists only the tenant's stations", async () => {
    const page = await newPage(browser, errors, { expected: /status of 40[0-9]/ });
    await page.goto(`${broker.url}/stations`);
    await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    await page.getByLabel('User', { exact: true }).fill('alice');
    await page.getByLabel('Password', { exact: true }).fill('alice-pw');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Stations' }).waitFor();
    await page.getByTestId('stations-table').getByRole('link', { name: 'acme-orders' }).waitFor();
    assert.equal(await page.getByText('globex-orders').count(), 0, "globex's station is invisible");
    await screenshot(page, 'tenant-stations');
    await page.goto(`${broker.url}/`);
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page.getByTestId('overview-cards').waitFor();
    await screenshot(page, 'tenant-overview');
  });

  test("the notifications page shows the tenant's events and alarms, and no webhooks", async () => {
    const nc = await connect({ servers: broker.nats, name: 'acme-sensor', user: 'alice', pass: 'alice-pw', reconnect: false });
    await nc.flush();
    await nc.close();
    const page = await newPage(browser, errors, { expected: /status of 40[0-9]/ });
    await page.goto(`${broker.url}/notifications`);
    await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    await page.getByLabel('User', { exact: true }).fill('alice');
    await page.getByLabel('Password', { exact: true }).fill('alice-pw');
    // The console asks once whether the user is an operator (403 for alice).
    const probe = page.waitForResponse((r) => r.url().endsWith('/v1/tenants'));
    await page.getByRole('button', { name: 'Sign in' }).click();
    assert.equal((await probe).status(), 403);
    await page.getByRole('heading', { level: 1, name: 'Notifications' }).waitFor();
    await page.getByTestId('alarms').getByText('No alarm is raised.').waitFor();
    await page.getByTestId('events-table').locator('tr[data-kind="client_disconnected"]', { hasText: 'acme-sensor' }).waitFor();
    assert.equal(await page.getByRole('heading', { name: 'Webhooks' }).count(), 0, 'webhooks are the operators');
    assert.equal(await page.getByRole('button', { name: /Send test/ }).count(), 0);
    await screenshot(page, 'tenant-notifications');
  });
});
