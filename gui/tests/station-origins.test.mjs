// End-to-end: geo-replication in the console. Two real `junction` processes
// (two "clusters"); a station on the second sources a station of the first over
// NATS (stream metadata `junction.remote.ORDERS`, made with a JetStream request
// from the nats.js client, as the HTTP body cannot express sources). The
// sourced station's page shows its origin, the broker it is on, the last origin
// sequence copied, the lag and when the origin was last seen; once the origin
// broker is stopped, the link's error shows there too.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, StringCodec } from 'nats';
import { launchBrowser, newPage, screenshot, startBroker } from './harness.mjs';

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

describe('a sourced station in the console', () => {
  let origin;
  let copy;
  let browser;
  let page;
  const errors = [];
  const sc = StringCodec();

  before(async () => {
    origin = await startBroker();
    copy = await startBroker();
    browser = await launchBrowser();
    page = await newPage(browser, errors);
  });

  after(async () => {
    await browser?.close();
    await origin?.stop();
    await copy?.stop();
  });

  test('shows the origin, its broker, the last copied sequence, the lag and when it was last seen', async () => {
    const a = await connect({ servers: origin.nats });
    const jsm = await a.jetstreamManager();
    await jsm.streams.add({ name: 'ORDERS', subjects: ['orders.>'] });
    const js = a.jetstream();
    for (let i = 1; i <= 25; i++) await js.publish(`orders.${i % 3}`, sc.encode(`order ${i}`));
    await a.close();

    const b = await connect({ servers: copy.nats });
    const created = await b.request(
      '$JS.API.STREAM.CREATE.GEO',
      sc.encode(
        JSON.stringify({
          name: 'GEO',
          subjects: [],
          sources: [{ name: 'ORDERS' }],
          metadata: { 'junction.remote.ORDERS': `nats://${origin.nats}` },
        }),
      ),
    );
    const answer = JSON.parse(sc.decode(created.data));
    assert.equal(answer.error, undefined, JSON.stringify(answer));
    await b.close();

    await until('GEO holds the 25 copies', async () => {
      const s = await (await fetch(`${copy.url}/v1/stations/GEO`)).json();
      return s.state.messages === 25 && s.sources?.[0]?.last_seq === 25;
    });

    await page.goto(`${copy.url}/stations/GEO`);
    const panel = page.getByTestId('origins');
    await panel.getByRole('heading', { name: 'Sources' }).waitFor();
    const row = panel.locator('tr[data-origin="ORDERS"]');
    await row.waitFor();
    assert.equal(await row.getByTestId('origin-broker').innerText(), origin.nats);
    assert.equal(await row.getByTestId('origin-last-seq').innerText(), '25');
    assert.equal(await row.getByTestId('origin-lag').innerText(), '0');
    assert.match(await row.getByTestId('origin-seen').innerText(), /just now|ago/);
    assert.equal(await row.getByTestId('origin-state').innerText(), 'caught up');
    await screenshot(page, 'station-origins');

    // The origin broker goes away: the link's error shows on the page (it
    // reloads every 5 s), and the origin is no longer "just now".
    await origin.stop();
    origin = undefined;
    await until('the link error shows', async () => (await row.getByTestId('origin-state').innerText()) !== 'caught up');
    assert.equal(await row.getByTestId('origin-state').innerText(), 'disconnected from the origin broker; reconnecting');
    await screenshot(page, 'station-origins-origin-down');
    assert.deepEqual(errors, []);
  });
});
