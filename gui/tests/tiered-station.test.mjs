// End-to-end: a tiered station in the console, against a real broker whose
// `[tier]` is a real S3 server (moto's server mode, started here). The station
// is created through the form with a tiering policy; once most of its messages
// live only in the bucket, the station page shows the local and remote shares,
// and the message browser reads the remote range when jumping to sequence 1
// and to a time, exactly as the HTTP API answers.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newPage, repo, screenshot, startBroker } from './harness.mjs';

const BUCKET = 'junction-gui-tier';
const PER_BATCH = 800;

/** moto's server, as tests/support/s3.rs finds it. */
function motoServer() {
  for (const c of [process.env.MOTO_SERVER, join(repo, 'target/tier-venv/bin/moto_server'), 'moto_server']) {
    if (!c) continue;
    if (c.includes('/') && !existsSync(c)) continue;
    if (spawnSync(c, ['--help'], { stdio: 'ignore' }).status === 0) return c;
  }
  if (process.env.REQUIRE_MOTO) throw new Error('moto_server not found: run scripts/test (it installs moto[server])');
  return null;
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });

/** A 1 KiB text payload that names its batch and index. */
const payload = (batch, i) => `${batch}-${i}-`.padEnd(1024, 'x');

const pad = (n) => String(n).padStart(2, '0');
/** `datetime-local`'s value for `d` in the browser's (and this process's) time zone. */
const localInput = (d) =>
  `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;

const bin = motoServer();

describe('a tiered station in the console', { skip: bin ? false : 'no moto_server (pip install moto[server])' }, () => {
  let moto;
  let broker;
  let browser;
  let page;
  const errors = [];
  let api;

  before(async () => {
    const port = await freePort();
    moto = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    const endpoint = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      try {
        // moto takes unsigned requests: make the bucket.
        const r = await fetch(`${endpoint}/${BUCKET}`, { method: 'PUT' });
        if (r.ok) break;
      } catch (e) {
        if (i > 100) throw e;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    Object.assign(process.env, {
      JUNCTION_TIER_ENDPOINT: endpoint,
      JUNCTION_TIER_BUCKET: BUCKET,
      JUNCTION_TIER_ALLOW_HTTP: 'true',
      JUNCTION_TIER_ACCESS_KEY_ID: 'testing',
      JUNCTION_TIER_SECRET_ACCESS_KEY: 'testing',
      JUNCTION_TIER_CACHE_BYTES: '4MiB',
    });
    broker = await startBroker();
    api = (path, init) => fetch(`${broker.url}/v1${path}`, init);
    browser = await launchBrowser();
    page = await newPage(browser, errors);
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
    moto?.kill('SIGKILL');
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test('the form creates a station with a tiering policy', async () => {
    await page.goto(`${broker.url}/stations?new=1`);
    const form = page.getByTestId('station-form');
    await form.getByLabel('Name').fill('archive');
    await form.getByLabel(/^Subjects/).fill('archive.>');
    await form.getByRole('checkbox', { name: /Upload sealed segments/ }).check();
    await form.getByLabel('Local bytes').fill('262144');
    // Inline validation first, as for every field: nothing is sent.
    await form.getByLabel('Segment size (bytes)').fill('0');
    await form.getByRole('button', { name: 'Create station' }).click();
    await form.getByText('Segment size must be a whole number ≥ 1.').waitFor();
    await form.getByLabel('Segment size (bytes)').fill('131072');
    await form.getByLabel('Segment age (s)').fill('1');
    await form.getByRole('button', { name: 'Create station' }).click();
    await page.waitForURL(`${broker.url}/stations/archive`);
    const station = await (await api('/stations/archive')).json();
    assert.deepEqual(station.tier, {
      local_max_bytes: 262144,
      local_max_age_ms: 0,
      segment_bytes: 131072,
      segment_max_age_ms: 1000,
      max_pending_bytes: 0,
    });
  });

  test('the page shows the local and remote shares, and the browser reads the remote range', async () => {
    // Two batches more than a second apart, so a jump to a whole second
    // between them has one right answer.
    for (const batch of ['a', 'b']) {
      for (let i = 1; i <= PER_BATCH; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, k) =>
            api(`/subjects/archive.${batch}`, { method: 'POST', body: payload(batch, i + k) }).then((r) =>
              assert.equal(r.status, 201, `publish ${batch}-${i + k}`),
            ),
          ),
        );
      }
      if (batch === 'a') await new Promise((r) => setTimeout(r, 1500));
    }
    // Uploads catch up (a hang guard only).
    let state;
    for (let i = 0; ; i++) {
      state = (await (await api('/stations/archive')).json()).state;
      if (state.tier.upload_lag_messages === 0 && state.tier.remote_messages >= PER_BATCH) break;
      assert.ok(i < 300, `uploads did not catch up: ${JSON.stringify(state)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(state.messages, 2 * PER_BATCH);
    assert.equal(state.first_seq, 1);

    await page.goto(`${broker.url}/stations/archive`);
    const card = page.getByTestId('tier-card');
    await card.getByTestId('tier-remote').getByText(/only in S3/).waitFor();
    assert.match(await card.getByTestId('tier-lag').innerText(), /everything uploaded/);
    const remoteText = await card.getByTestId('tier-remote').innerText();
    assert.match(remoteText, /\d+ segments/);
    assert.ok(!/^0 only/.test(remoteText), remoteText);

    // Sequence 1 is in the bucket: the browser shows it, as the API does.
    const browserForm = page.locator('form.jump');
    await browserForm.getByLabel('Jump to sequence').fill('1');
    await browserForm.getByRole('button', { name: 'Go', exact: true }).click();
    const rows = page.getByTestId('messages-table').locator('tbody tr');
    await page.locator('tbody tr[data-seq="1"]').waitFor();
    assert.equal(await rows.first().getAttribute('data-seq'), '1');
    // Payloads of one batch were published 50 at a time: any of its names.
    assert.match(await rows.first().innerText(), /\ba-\d+-x/);

    // A time between the batches: the first message of the second batch.
    const lastA = await (await api(`/stations/archive/messages/${PER_BATCH}`)).json();
    const at = new Date(Math.ceil(new Date(lastA.time).getTime() / 1000) * 1000);
    const oracle = await (await api(`/stations/archive/messages?from_time=${at.toISOString()}&limit=1`)).json();
    assert.equal(oracle.messages[0].seq, PER_BATCH + 1, 'the API agrees on the oracle');
    await browserForm.getByLabel('Jump to sequence').fill('');
    await browserForm.getByLabel(/or time/).fill(localInput(at));
    await browserForm.getByRole('button', { name: 'Go', exact: true }).click();
    await page.locator(`tbody tr[data-seq="${PER_BATCH + 1}"]`).waitFor();
    assert.equal(await rows.first().getAttribute('data-seq'), String(PER_BATCH + 1));
    assert.match(await rows.first().innerText(), /\bb-\d+-x/);

    // Those reads went through the read cache, and the card says how.
    await page.reload();
    await card.getByTestId('tier-cache').getByText(/read cache \d+% hits of \d+ block reads/).waitFor();
    await screenshot(page, 'tiered-station');
  });
});
