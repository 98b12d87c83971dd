// End-to-end: a replicated station in a three-node cluster of real `junction`
// processes, in the console of node 1:
// - created with 3 replicas from the station form;
// - its page shows the leader and the three replicas, online and current;
// - "Step down leader" hands the lead to another replica;
// - "Move" (peer-remove) is refused with no spare node, as the broker said it
//   (503 insufficient_resources): the station never drops below 3 replicas;
// - the form offers 1, 3 or 5 replicas for it, and 5 on three nodes is
//   refused the same way;
// - a node stopped makes the station under-replicated on its page, in the
//   stations list and on the Cluster page.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newPage, screenshot, startBroker } from './harness.mjs';

/** A free port on 127.0.0.1 (bound, then released for the broker to take). */
const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true; a hang guard of 60 s, no timing asserted. */
async function until(what, check) {
  const end = Date.now() + 60_000;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`never: ${what}`);
    await sleep(200);
  }
}

describe('a replicated station in the console', () => {
  const nodes = [];
  let browser;
  let page;
  const errors = [];

  before(async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const routes = ports.map((p) => `nats://127.0.0.1:${p}`).join(',');
    for (const [i, port] of ports.entries()) {
      nodes.push(
        await startBroker(['-n', `rep-${i + 1}`, '--cluster', `nats://127.0.0.1:${port}`, '--routes', routes, '--cluster_name', 'gui-r3']),
      );
    }
    await until('the meta group forms with 3 voters', async () => {
      const c = await (await fetch(`${nodes[0].url}/v1/cluster`)).json();
      return c.meta_leader !== null && c.nodes.filter((n) => n.voter && n.online).length === 3;
    });
    browser = await launchBrowser();
    // The refused move answers 503 on purpose.
    page = await newPage(browser, errors, { expected: /status of (40[0-9]|503)/ });
  });

  after(async () => {
    await browser?.close();
    for (const n of nodes) await n?.stop();
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test('shows replicas, steps down, refuses a move without a spare, and shows under-replication', async () => {
    const one = nodes[0];
    await page.goto(`${one.url}/stations?new=1`);
    const form = page.getByTestId('station-form');
    await form.getByLabel('Name').fill('orders');
    await form.getByLabel(/^Subjects/).fill('orders.>');
    await form.getByLabel('Replicas').selectOption('3');
    await form.getByRole('button', { name: 'Create station' }).click();
    await page.waitForURL(`${one.url}/stations/orders`);
    const made = await (await fetch(`${one.url}/v1/stations/orders`)).json();
    assert.equal(made.replicas, 3);

    const panel = page.getByTestId('replicas');
    await panel.getByText('3 of 3 replicas online and current').waitFor();
    await panel.getByTestId('replicas-leader').getByText(/^rep-[123]$/).waitFor();
    assert.equal(await panel.getByTestId('replicas-table').locator('tbody tr').count(), 3);
    const leader = await panel.getByTestId('replicas-leader').innerText();
    await panel.locator(`tr[data-replica="${leader}"]`).getByText('leader', { exact: true }).waitFor();
    await screenshot(page, 'replicas-three');

    // Step down: another replica leads (the page refreshes by itself).
    await panel.getByRole('button', { name: 'Step down leader' }).click();
    await panel.getByTestId('replicas-note').getByText(/to take the lead/).waitFor();
    await until('another replica leads', async () => {
      const now = await panel.getByTestId('replicas-leader').innerText();
      return /^rep-[123]$/.test(now) && now !== leader;
    });

    // Move refused: every node of the cluster has a replica already.
    await panel.getByRole('button', { name: 'Move the replica off rep-2' }).click();
    const refused = panel.getByRole('alert');
    await refused.waitFor();
    assert.match(await refused.innerText(), /insufficient_resources/);
    const still = await (await fetch(`${one.url}/v1/stations/orders`)).json();
    assert.equal(still.cluster.replicas.length, 3);

    // The form offers 1, 3 and 5; 5 on three nodes is refused as the broker
    // says it, and nothing changes.
    await page.getByRole('button', { name: 'Edit' }).click();
    const edit = page.getByTestId('station-form');
    const replicas = edit.getByLabel('Replicas');
    assert.equal(await replicas.isDisabled(), false);
    assert.equal(await replicas.locator('option[value="1"]').count(), 1);
    await replicas.selectOption('5');
    await edit.getByRole('button', { name: 'Save changes' }).click();
    const tooMany = edit.getByTestId('server-error');
    await tooMany.waitFor();
    assert.match(await tooMany.innerText(), /insufficient_resources/);
    await edit.getByRole('button', { name: 'Cancel' }).click();
    assert.equal((await (await fetch(`${one.url}/v1/stations/orders`)).json()).replicas, 3);

    // A node stops: under-replicated on the station's page, in the list and on
    // the Cluster page.
    await nodes[2].stop();
    nodes[2] = undefined;
    await panel.getByTestId('under-replicated').waitFor();
    await panel.locator('tr[data-replica="rep-3"]').getByText('offline', { exact: true }).waitFor();
    await screenshot(page, 'replicas-under-replicated');
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Stations' }).click();
    const row = page.getByTestId('stations-table').locator('tr', { has: page.getByRole('link', { name: 'orders' }) });
    await row.getByText('R3', { exact: true }).waitFor();
    await row.getByTestId('under-replicated').waitFor();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Cluster' }).click();
    const alert = page.getByTestId('cluster-under-replicated');
    await alert.getByRole('link', { name: 'orders' }).waitFor();
    await screenshot(page, 'cluster-under-replicated');
  });
});
