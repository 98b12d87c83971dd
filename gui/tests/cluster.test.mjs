// End-to-end: the Cluster page of a node in a two-node cluster (real `junction`
// processes linked with nats-server style flags) lists both nodes, and shows a
// node that was stopped as offline.
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

describe('the cluster page', () => {
  let one;
  let two;
  let browser;
  let page;
  const errors = [];

  before(async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const routes = `nats://127.0.0.1:${p1},nats://127.0.0.1:${p2}`;
    const node = (name, port) => ['-n', name, '--cluster', `nats://127.0.0.1:${port}`, '--routes', routes, '--cluster_name', 'gui-test'];
    one = await startBroker(node('gui-1', p1));
    two = await startBroker(node('gui-2', p2));
    browser = await launchBrowser();
    page = await newPage(browser, errors);
  });

  after(async () => {
    await browser?.close();
    await one?.stop();
    await two?.stop();
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test('lists every node with its meta role, linked in the navigation, and shows a stopped node offline', async () => {
    await page.goto(one.url);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Cluster' }).click();
    await page.getByRole('heading', { level: 1, name: 'Cluster' }).waitFor();
    const summary = page.getByTestId('cluster-summary');
    await summary.getByText('2 of 2 nodes online').waitFor();
    assert.match(await summary.innerText(), /Cluster gui-test/);
    const table = page.getByTestId('cluster-table');
    const first = table.locator('tr[data-node="gui-1"]');
    const second = table.locator('tr[data-node="gui-2"]');
    assert.match(await first.innerText(), /this node/);
    await second.getByText('online', { exact: true }).waitFor();
    // The meta group forms: one leader, the other a voter, both with an id.
    await page.getByTestId('cluster-leader').getByText(/gui-[12]/).waitFor();
    const leader = await page.getByTestId('cluster-leader').innerText();
    const other = leader === 'gui-1' ? second : first;
    await table.locator(`tr[data-node="${leader}"]`).getByText('leader', { exact: true }).waitFor();
    await other.getByText('voter', { exact: true }).waitFor();
    // The leader knows how far behind the other is (caught up: 0).
    if (leader === 'gui-1') await second.getByTestId('lag').getByText('0', { exact: true }).waitFor();
    // A station made on gui-2 shows as held by gui-2 on gui-1's page.
    const made = await fetch(`${two.url}/v1/stations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'placed', subjects: ['placed.>'] }),
    });
    assert.equal(made.status, 201);
    await second.getByTestId('held').getByText('placed', { exact: true }).waitFor();
    assert.equal(await first.getByTestId('held').innerText(), '—');
    await screenshot(page, 'cluster-two-nodes');

    // The Overview shows the cluster too, with the same leader.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Overview' }).click();
    const card = page.getByTestId('cluster-card');
    await card.getByText('2 of 2 nodes').waitFor();
    await card.getByTestId('cluster-card-leader').getByText(leader, { exact: true }).waitFor();
    assert.match(await card.innerText(), /gui-test/);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Cluster' }).click();
    await page.getByRole('heading', { level: 1, name: 'Cluster' }).waitFor();

    await two.stop();
    two = undefined;
    // The page refreshes by itself.
    await second.getByText('offline', { exact: true }).waitFor();
    await summary.getByText('1 of 2 nodes online').waitFor();
  });
});
