// End-to-end: the console's Key-value page against a real broker. A NATS
// client (nats.js's `js.views.kv`) makes a bucket and puts keys; the page
// lists the bucket and its keys, shows a key's value and history, puts a new
// revision and deletes a key, and the NATS client reads what the page wrote.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, StringCodec } from 'nats';
import { launchBrowser, newPage, screenshot, startBroker } from './harness.mjs';

const sc = StringCodec();

describe('key-value buckets in the console', () => {
  let broker;
  let browser;
  let page;
  let nc;
  let kv;
  const errors = [];

  before(async () => {
    broker = await startBroker();
    browser = await launchBrowser();
    page = await newPage(browser, errors);
    nc = await connect({ servers: broker.nats, name: 'gui-kv-client' });
    kv = await nc.jetstream().views.kv('settings', { history: 5 });
    await kv.put('color', sc.encode('red'));
    await kv.put('color', sc.encode('blue'));
    await kv.put('size', sc.encode('XL'));
  });

  after(async () => {
    await nc?.close();
    await browser?.close();
    await broker?.stop();
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test('the page lists buckets and keys, and shows a value with its history', async () => {
    await page.goto(`${broker.url}/kv`);
    await page.getByRole('heading', { level: 1, name: 'Key-value' }).waitFor();
    const buckets = page.getByTestId('buckets-table');
    await buckets.getByRole('button', { name: 'settings' }).click();
    await page.waitForURL(/bucket=settings/);
    const keys = page.getByRole('list', { name: 'Keys' });
    await keys.getByRole('button', { name: 'color' }).waitFor();
    await keys.getByRole('button', { name: 'size' }).waitFor();
    await keys.getByRole('button', { name: 'color' }).click();
    await page.waitForURL(/key=color/);
    const detail = page.getByTestId('key-detail');
    await detail.getByTestId('current-value').getByText('blue').waitFor();
    const history = detail.getByTestId('history-table');
    await history.getByText('red').waitFor();
    assert.equal(await history.locator('tbody tr').count(), 2);
    await screenshot(page, 'key-value');
  });

  test('a put from the page is a new revision NATS clients read', async () => {
    const form = page.getByRole('form', { name: 'Put a key' });
    await form.getByLabel('Key').fill('color');
    await form.getByLabel('Value').fill('green');
    await form.getByRole('button', { name: 'Put' }).click();
    await form.getByText(/Put color \(revision \d+\)\./).waitFor();
    const detail = page.getByTestId('key-detail');
    await detail.getByTestId('current-value').getByText('green').waitFor();
    const history = detail.getByTestId('history-table');
    await history.getByText('green').waitFor();
    assert.equal(await history.locator('tbody tr').count(), 3);
    const entry = await kv.get('color');
    assert.equal(sc.decode(entry.value), 'green');
  });

  test('a delete from the page leaves a marker in the history and the key goes from the list', async () => {
    await page.getByRole('list', { name: 'Keys' }).getByRole('button', { name: 'size' }).click();
    await page.waitForURL(/key=size/);
    const detail = page.getByTestId('key-detail');
    await detail.getByTestId('current-value').getByText('XL').waitFor();
    await detail.getByRole('button', { name: 'Delete key' }).click();
    await detail.getByTestId('key-deleted').waitFor();
    await detail.getByTestId('history-table').getByRole('cell', { name: 'DEL' }).waitFor();
    await page.getByRole('list', { name: 'Keys' }).getByRole('button', { name: 'size' }).waitFor({ state: 'detached' });
    const entry = await kv.get('size');
    assert.ok(entry === null || entry.operation === 'DEL', `NATS sees the delete: ${JSON.stringify(entry)}`);
  });
});
