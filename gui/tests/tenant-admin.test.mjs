// End-to-end: an operator (a user of the system tenant `$SYS`) administers
// tenants on the Tenants page: sees the configuration's tenants read-only, makes
// one through the form (its user logs in over NATS at once, its station limit
// holds), adds a user, sees the broker's 422 for a bad name inline, and deletes
// it after confirming. A tenant's user, and the default tenant's user (not an
// operator when `$SYS` exists), do not get the page in the navigation.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from 'nats';
import { launchBrowser, newPage, screenshot, startBroker } from './harness.mjs';

const CONFIG = `
[auth]
users = [{ user = "admin", password = "admin-pw" }]

[[tenants]]
name = "$SYS"
users = [{ user = "ops", password = "ops-pw" }]

[[tenants]]
name = "acme"
users = [{ user = "alice", password = "alice-pw" }]
`;

const basicAuth = (user, pass) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

/** A NATS connection as `user`, or the error that refused it. */
async function natsLogin(broker, user, pass) {
  try {
    return await connect({ servers: broker.nats, user, pass, reconnect: false, timeout: 5000 });
  } catch (e) {
    return e;
  }
}

async function signIn(page, url, user, pass) {
  await page.goto(`${url}/`);
  await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
  await page.getByLabel('User', { exact: true }).fill(user);
  await page.getByLabel('Password', { exact: true }).fill(pass);
  // The navigation's probe of GET /v1/tenants, made once signed in.
  const probed = page.waitForResponse(
    (r) => new URL(r.url()).pathname === '/v1/tenants' && r.request().headers().authorization === basicAuth(user, pass),
  );
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  return (await probed).status();
}

describe('tenant administration in the console', () => {
  let broker;
  let browser;
  let page;
  const errors = [];

  const asOps = async (method, path, body) => {
    const res = await fetch(`${broker.url}${path}`, {
      method,
      headers: { Authorization: basicAuth('ops', 'ops-pw'), 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };

  const nav = () => page.getByRole('navigation', { name: 'Main' });
  const table = () => page.getByTestId('tenants-table');
  const row = (name) => table().locator(`tr[data-tenant="${name}"]`);
  const form = () => page.getByTestId('tenant-form');
  const userRow = (i) => form().getByTestId('tenant-user').nth(i);

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'junction-gui-tenant-admin-'));
    const file = join(dir, 'tenants.toml');
    writeFileSync(file, CONFIG);
    broker = await startBroker(['-c', file]);
    browser = await launchBrowser();
    // 403 and 404 as anywhere, and the 422 the bad name provokes on purpose.
    page = await newPage(browser, errors, { expected: /status of 4(0[0-9]|22)/ });
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test("an operator sees every tenant, the configuration's read-only", async () => {
    assert.equal(await signIn(page, broker.url, 'ops', 'ops-pw'), 200);
    await nav().getByRole('link', { name: 'Tenants' }).click();
    await page.getByRole('heading', { level: 1, name: 'Tenants' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/tenants');
    await row('acme').waitFor();
    const names = await table().locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.tenant));
    assert.deepEqual(names, ['$G', '$SYS', 'acme']);
    for (const name of ['$G', '$SYS', 'acme']) {
      await row(name).getByText('defined in the configuration file').waitFor();
      assert.equal(await row(name).getByRole('button').count(), 0, `${name} has no Edit or Delete`);
    }
    await row('$G').getByText('default', { exact: true }).waitFor();
    await row('$G').getByText('admin', { exact: true }).waitFor();
    await row('$SYS').getByText('operators', { exact: true }).waitFor();
    await row('$SYS').getByText('ops', { exact: true }).waitFor();
    await row('acme').getByText('config', { exact: true }).waitFor();
    await row('acme').getByText('alice', { exact: true }).waitFor();
    await row('acme').getByText('password', { exact: true }).waitFor();
    assert.ok(!(await table().textContent()).includes('alice-pw'), 'no password is shown');
    await screenshot(page, 'tenants');
  });

  test('makes a tenant through the form; its user logs in and its limit holds', async () => {
    await page.getByRole('button', { name: 'New tenant' }).click();
    await form().getByLabel('Name', { exact: true }).fill('initech');
    await userRow(0).getByLabel('User', { exact: true }).fill('peter');
    await userRow(0).getByLabel('Password', { exact: true }).fill('peter-pw');
    await form().getByLabel('Max stations').fill('1');
    await screenshot(page, 'tenants-new');
    await form().getByRole('button', { name: 'Make tenant' }).click();
    await page.getByRole('status').getByText('Made tenant initech.').waitFor();
    assert.equal(await form().count(), 0, 'the form closes');
    await row('initech').getByText('api', { exact: true }).waitFor();
    await row('initech').getByText('peter', { exact: true }).waitFor();
    await row('initech').getByText('bcrypt', { exact: true }).waitFor();
    await row('initech').getByText('max stations 1').waitFor();
    await row('initech').getByRole('button', { name: 'Edit tenant initech' }).waitFor();

    const { status, body } = await asOps('GET', '/v1/tenants/initech');
    assert.equal(status, 200);
    assert.equal(body.source, 'api');
    assert.deepEqual(body.jetstream, { max_streams: 1 });
    assert.deepEqual(body.limits, {});
    assert.deepEqual(
      body.users.map((u) => [u.user, u.login, u.permissions]),
      [['peter', 'bcrypt', undefined]],
    );

    const peter = await natsLogin(broker, 'peter', 'peter-pw');
    assert.ok(!(peter instanceof Error), `peter logs in over NATS: ${peter}`);
    try {
      const jsm = await peter.jetstreamManager();
      await jsm.streams.add({ name: 'orders', subjects: ['orders.>'] });
      await assert.rejects(jsm.streams.add({ name: 'more', subjects: ['more.>'] }), (e) => {
        assert.match(`${e.message} ${e.api_error?.err_code ?? ''}`, /10027|maximum number of streams/i);
        return true;
      });
      // The operators see every tenant's clients, with their tenant.
      await nav().getByRole('link', { name: 'Connections' }).click();
      const conns = page.getByTestId('connections-table');
      await conns.getByRole('columnheader', { name: 'Tenant' }).waitFor();
      await conns.getByRole('row').filter({ has: page.getByText('user peter') }).getByText('initech').waitFor();
    } finally {
      await peter.close();
    }
    await nav().getByRole('link', { name: 'Tenants' }).click();
    await row('initech').getByText('stations: 1').waitFor();
  });

  test('edits the tenant: adds a user, and the existing one keeps its password', async () => {
    await row('initech').getByRole('button', { name: 'Edit tenant initech' }).click();
    await form().getByRole('heading', { name: 'Edit tenant initech' }).waitFor();
    assert.equal(await form().getByLabel('Name', { exact: true }).count(), 0, 'the name is fixed');
    assert.equal(await userRow(0).getByLabel('User', { exact: true }).inputValue(), 'peter');
    assert.equal(await userRow(0).getByLabel('Password', { exact: true }).getAttribute('placeholder'), 'unchanged');
    assert.equal(await form().getByLabel('Max stations').inputValue(), '1');
    await form().getByRole('button', { name: 'Add user' }).click();
    await userRow(1).getByLabel('User', { exact: true }).fill('michael');
    await userRow(1).getByLabel('Password', { exact: true }).fill('michael-pw');
    await userRow(1).getByLabel('Publish: deny').fill('secret.>, hr.>');
    await userRow(1).getByLabel('May answer requests (allow_responses)').check();
    await screenshot(page, 'tenants-edit');
    await form().getByRole('button', { name: 'Save tenant' }).click();
    await page.getByRole('status').getByText('Saved tenant initech.').waitFor();
    await row('initech').getByText('michael', { exact: true }).waitFor();
    await row('initech').getByText('restricted').waitFor();
    // Opened again, the form shows what was saved.
    await row('initech').getByRole('button', { name: 'Edit tenant initech' }).click();
    const michael = form().getByRole('group', { name: 'User michael' });
    assert.equal(await michael.getByLabel('Publish: deny').inputValue(), 'secret.>, hr.>');
    assert.ok(await michael.getByLabel('May answer requests (allow_responses)').isChecked());
    const peterRow = form().getByRole('group', { name: 'User peter' });
    assert.equal(await peterRow.getByLabel('Publish: deny').inputValue(), '');
    await form().getByRole('button', { name: 'Cancel' }).click();
    await form().waitFor({ state: 'detached' });

    const { body } = await asOps('GET', '/v1/tenants/initech');
    const users = Object.fromEntries(body.users.map((u) => [u.user, u]));
    assert.deepEqual(Object.keys(users).sort(), ['michael', 'peter']);
    assert.equal(users.peter.login, 'bcrypt');
    assert.equal(users.peter.permissions, undefined);
    assert.equal(users.michael.login, 'bcrypt', 'the new password is stored as a hash');
    assert.deepEqual(users.michael.permissions.publish.deny, ['secret.>', 'hr.>']);
    assert.equal(users.michael.permissions.allow_responses, true);
    assert.equal(users.michael.permissions.subscribe, undefined);
    assert.deepEqual(body.jetstream, { max_streams: 1 }, 'the limit is kept');
    for (const [user, pass] of [
      ['peter', 'peter-pw'],
      ['michael', 'michael-pw'],
    ]) {
      const nc = await natsLogin(broker, user, pass);
      assert.ok(!(nc instanceof Error), `${user} logs in over NATS: ${nc}`);
      await nc.close();
    }
  });

  test("a bad name shows the broker's 422 inline and makes nothing", async () => {
    await page.getByRole('button', { name: 'New tenant' }).click();
    await form().getByLabel('Name', { exact: true }).fill('bad name!');
    await userRow(0).getByLabel('User', { exact: true }).fill('bill');
    await userRow(0).getByLabel('Password', { exact: true }).fill('bill-pw');
    await form().getByRole('button', { name: 'Make tenant' }).click();
    const shown = form().getByTestId('tenant-form-error');
    await shown.waitFor();
    // The same request over the API: the page shows its message as it is.
    const direct = await asOps('PUT', `/v1/tenants/${encodeURIComponent('bad name!')}`, {
      users: [{ user: 'bill', password: 'bill-pw' }],
      limits: {},
      jetstream: {},
    });
    assert.equal(direct.status, 422);
    assert.equal(direct.body.error.code, 'invalid_config');
    assert.equal((await shown.textContent()).trim(), direct.body.error.message);
    await screenshot(page, 'tenants-bad-name');
    assert.equal(await form().count(), 1, 'the form stays open');
    await form().getByRole('button', { name: 'Cancel' }).click();
    const { body } = await asOps('GET', '/v1/tenants');
    assert.deepEqual(
      body.tenants.map((t) => t.name),
      ['$G', '$SYS', 'acme', 'initech'],
    );
  });

  test('deletes the tenant after confirming; its users are refused', async () => {
    await row('initech').getByRole('button', { name: 'Delete tenant initech' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText('Delete tenant initech?').waitFor();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
    assert.equal((await asOps('GET', '/v1/tenants/initech')).status, 200, 'Cancel keeps it');

    await row('initech').getByRole('button', { name: 'Delete tenant initech' }).click();
    await dialog.getByRole('button', { name: 'Delete tenant' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await page.getByRole('status').getByText('Deleted tenant initech.').waitFor();
    await row('initech').waitFor({ state: 'detached' });
    assert.equal((await asOps('GET', '/v1/tenants/initech')).status, 404);
    const peter = await natsLogin(broker, 'peter', 'peter-pw');
    assert.ok(peter instanceof Error, 'peter is refused');
    if (!(peter instanceof Error)) await peter.close();
  });

  test("a tenant's user and the default tenant's user get no Tenants page in the navigation", async () => {
    for (const [user, pass] of [
      ['alice', 'alice-pw'],
      ['admin', 'admin-pw'],
    ]) {
      const other = await newPage(browser, errors);
      try {
        assert.equal(await signIn(other, broker.url, user, pass), 403, `${user} is not an operator`);
        const links = other.getByRole('navigation', { name: 'Main' }).getByRole('link');
        await links.filter({ hasText: 'Cluster' }).waitFor();
        assert.equal(await links.filter({ hasText: 'Tenants' }).count(), 0, `${user} has no Tenants link`);
        // The page itself, opened by its URL, says why.
        await other.goto(`${broker.url}/tenants`);
        await other.getByRole('alert').getByText('administered by the operators').waitFor();
        if (user === 'alice') await screenshot(other, 'tenants-refused');
      } finally {
        await other.close();
      }
    }
  });
});
