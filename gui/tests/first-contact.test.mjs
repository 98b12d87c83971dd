// End-to-end: what a new user meets first in the console (issue 12, "First contact →
// Console"), against a real broker: figures that count clients only, the server's
// name, what "on disk" means, a lineage graph without needless crossings, a stations
// table that fits 1400 px, a station with 10,000 subjects, binary payloads, and a
// sign-in that offers the broker's own kind of credentials.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { connect } from 'nats';
import { launchBrowser, newPage, screenshot, startBroker } from './harness.mjs';

const json = (body) => ({
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify(body),
});

describe('first contact with the console', () => {
  let broker;
  let browser;
  let page;
  const errors = [];
  const api = async (path, init) => {
    const res = await fetch(`${broker.url}${path}`, init);
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };

  before(async () => {
    broker = await startBroker(['--name', 'edge-broker-1'], { mqtt: true });
    browser = await launchBrowser();
    page = await newPage(browser, errors);
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test('the overview counts client messages and connections only, not the broker own', async () => {
    // A station over HTTP (the HTTP gateway's internal client appears), 3 HTTP
    // publishes, 5 JetStream publishes acked by the engine's own client, and an MQTT
    // client (the MQTT front-end's internal client publishes $SYS figures).
    assert.equal((await api('/v1/stations', json({ name: 'counted', subjects: ['counted.>'] }))).status, 201);
    for (let i = 0; i < 3; i++) {
      assert.equal((await api('/v1/subjects/counted.http', { method: 'POST', body: `h${i}` })).status, 201);
    }
    const nc = await connect({ servers: broker.nats, name: 'counting-client' });
    const mq = await mqtt.connectAsync(broker.mqtt, { clientId: 'counting-mqtt', protocolVersion: 5, reconnectPeriod: 0 });
    try {
      const js = nc.jetstream();
      for (let i = 0; i < 5; i++) {
        const ack = await js.publish('counted.nats', new TextEncoder().encode(`n${i}`));
        assert.equal(ack.seq, 4 + i);
      }
      // The engine counts a delivery just after handing it over: the 5th ack can reach
      // the client first. Read until the figures have caught up, then compare exactly.
      let server;
      for (let i = 0; i < 200; i++) {
        server = (await api('/v1/server')).body;
        if (server.out_msgs >= 5) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      // 3 HTTP + 5 NATS; not the 5 PubAcks nor any $SYS figure.
      assert.equal(server.in_msgs, 8, JSON.stringify(server));
      // The 5 PubAcks delivered to the NATS client; not the deliveries to the engine.
      assert.equal(server.out_msgs, 5, JSON.stringify(server));
      assert.equal(server.connections, 2, 'the NATS and the MQTT client, not junction-http nor junction-mqtt');
      assert.equal(server.total_connections, 2);
      const varz = (await api('/varz')).body;
      assert.equal(varz.connections, 2);
      assert.equal(varz.in_msgs, 8);
      const connz = (await api('/connz')).body;
      assert.equal(connz.num_connections, 2);
      assert.deepEqual(connz.connections.map((c) => c.name).sort(), ['counting-client', 'counting-mqtt']);
      const listed = (await api('/v1/connections')).body.connections;
      const internal = listed.filter((c) => c.internal).map((c) => c.name).sort();
      assert.deepEqual(internal, ['junction-http', 'junction-mqtt']);
      assert.equal(listed.find((c) => c.name === 'junction-http').in_msgs, 3, 'the gateway still shows its traffic');

      await page.goto(`${broker.url}/`);
      const cards = page.getByTestId('overview-cards');
      await cards.waitFor();
      assert.equal(await page.getByTestId('messages-in-total').innerText(), '8 since start');
      assert.match(await page.getByTestId('connections-card').innerText(), /^Connections\s+2\s+2 since start/);
      const byProtocol = page.getByTestId('connections-by-protocol');
      assert.equal(await byProtocol.getByRole('row', { name: /^http/ }).getByRole('cell').nth(1).innerText(), '0');
      assert.equal(await byProtocol.getByRole('row', { name: /^nats/ }).getByRole('cell').nth(1).innerText(), '1');
      await screenshot(page, 'first-contact-overview');

      // Connections: the broker's own clients are hidden, and shown labelled on request.
      await page.goto(`${broker.url}/connections`);
      const table = page.getByTestId('connections-table');
      await table.getByText('counting-client').waitFor();
      await table.getByText('counting-mqtt').waitFor();
      assert.equal(await table.getByText('junction-http').count(), 0);
      assert.equal(await table.getByText('junction-mqtt').count(), 0);
      await page.getByLabel(/Show the broker's internal clients \(2\)/).check();
      for (const name of ['junction-http', 'junction-mqtt']) {
        const row = table.getByRole('row').filter({ has: page.getByRole('cell', { name, exact: true }) });
        await row.waitFor();
        assert.equal(await row.locator('.badge.internal').innerText(), 'internal');
        assert.equal(await row.getByRole('button', { name: /Disconnect/ }).count(), 0);
        assert.equal(await row.getByText('inside the broker').count(), 1);
      }
      assert.match(page.url(), /internal=1/);
      await screenshot(page, 'first-contact-connections-internal');
    } finally {
      await nc.close();
      await mq.endAsync();
    }
  });

  test('the server is shown by its name, its 56-character id only shortened', async () => {
    const server = (await api('/v1/server')).body;
    assert.equal(server.server_id.length, 56);
    await page.goto(`${broker.url}/`);
    const name = page.getByTestId('server-name');
    assert.equal(await name.innerText(), 'edge-broker-1');
    const id = page.getByTestId('server-id');
    assert.equal(await id.innerText(), `${server.server_id.slice(0, 8)}…${server.server_id.slice(-4)}`);
    assert.equal(await id.getAttribute('title'), server.server_id);
    assert.equal(await page.getByText(server.server_id, { exact: true }).count(), 0, 'the whole id is not on the page');
  });

  test('storage on disk says what it counts, next to the bytes of stored messages', async () => {
    const stations = (await api('/v1/stations')).body.stations;
    const stored = stations.reduce((a, s) => a + s.state.bytes, 0);
    await page.goto(`${broker.url}/`);
    const card = page.getByTestId('storage-card');
    await card.waitFor();
    assert.equal(await page.getByTestId('stored-bytes').innerText(), `${stored} B of messages`);
    assert.match(await card.innerText(), /journal is preallocated/);
    assert.match(await card.getAttribute('title'), /not the size of the stored messages/);
  });

  test('the lineage graph is layered without crossings, labels beside the lines', async () => {
    // Names chosen so that alphabetical order would cross: a-producer feeds zeta,
    // z-producer feeds alpha, and m-producer feeds both.
    for (const name of ['alpha', 'zeta']) {
      assert.equal((await api('/v1/stations', json({ name, subjects: [`${name}.>`] }))).status, 201);
      assert.equal((await api(`/v1/stations/${name}/groups`, json({ name: `${name}-readers` }))).status, 201);
    }
    const clients = [];
    try {
      for (const [client, subjects] of [
        ['a-producer', ['zeta.x']],
        ['z-producer', ['alpha.x']],
        ['m-producer', ['alpha.y', 'zeta.y']],
      ]) {
        const nc = await connect({ servers: broker.nats, name: client });
        clients.push(nc);
        const js = nc.jetstream();
        for (const s of subjects) await js.publish(s, new TextEncoder().encode(client));
      }
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
    for (const name of ['alpha', 'zeta']) {
      const fetched = await api(`/v1/stations/${name}/groups/${name}-readers/fetch`, json({ batch: 10 }));
      assert.equal(fetched.status, 200);
      assert.equal(fetched.body.messages.length, 2);
    }

    await page.goto(`${broker.url}/lineage`);
    const graph = page.getByTestId('lineage-graph');
    await graph.locator('.edge[data-from="producer:nats:m-producer"][data-to="station:zeta"]').waitFor();
    await graph.locator('.edge[data-to="group:zeta/zeta-readers"]').waitFor();
    assert.equal(await graph.getAttribute('data-crossings'), '0');

    const geometry = await graph.evaluate((svg) => {
      const edges = [...svg.querySelectorAll('.edge')].map((g) => {
        const path = g.querySelector('path');
        const len = path.getTotalLength();
        const points = [];
        for (let i = 0; i <= 60; i++) {
          const p = path.getPointAtLength((len * i) / 60);
          points.push([p.x, p.y]);
        }
        return { from: g.dataset.from, to: g.dataset.to, points };
      });
      const labels = [...svg.querySelectorAll('.edge-label-box')].map((g) => {
        const r = g.querySelector('rect');
        const t = g.querySelector('text').getBBox();
        return {
          from: g.dataset.from,
          to: g.dataset.to,
          box: { x: +r.getAttribute('x'), y: +r.getAttribute('y'), w: +r.getAttribute('width'), h: +r.getAttribute('height') },
          text: { x: t.x, y: t.y, w: t.width, h: t.height },
        };
      });
      const nodes = [...svg.querySelectorAll('.node')].map((g) => {
        const r = g.querySelector('rect');
        return { id: g.dataset.id, kind: g.classList[1], x: +r.getAttribute('x'), y: +r.getAttribute('y') };
      });
      return { edges, labels, nodes };
    });
    // Every station edge of the graph above (producers of `counted` included).
    assert.ok(geometry.edges.length >= 8, JSON.stringify(geometry.edges.map((e) => [e.from, e.to])));

    // Layers by kind, left to right: producers, stations, groups.
    const column = (kind) => new Set(geometry.nodes.filter((n) => n.kind === kind).map((n) => n.x));
    const [px, sx, gx] = ['producer', 'station', 'group'].map((k) => [...column(k)]);
    assert.equal(px.length, 1);
    assert.equal(sx.length, 1);
    assert.equal(gx.length, 1);
    assert.ok(px[0] < sx[0] && sx[0] < gx[0]);

    // No two edges cross: between the same layers, the order of their ends agrees.
    const ends = (e) => [e.points[0], e.points[e.points.length - 1]];
    for (let i = 0; i < geometry.edges.length; i++) {
      for (let j = i + 1; j < geometry.edges.length; j++) {
        const [a1, a2] = ends(geometry.edges[i]);
        const [b1, b2] = ends(geometry.edges[j]);
        if (Math.abs(a1[0] - b1[0]) > 1 || Math.abs(a2[0] - b2[0]) > 1) continue;
        assert.ok(
          (a1[1] - b1[1]) * (a2[1] - b2[1]) >= 0,
          `${geometry.edges[i].from}→${geometry.edges[i].to} crosses ${geometry.edges[j].from}→${geometry.edges[j].to}`,
        );
      }
    }

    // Every label has a background, holds its text, overlaps no other label, and no
    // line runs through it.
    assert.equal(geometry.labels.length, geometry.edges.length);
    const inside = ([x, y], b) => x > b.x && x < b.x + b.w && y > b.y && y < b.y + b.h;
    const overlap = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
    for (const [i, l] of geometry.labels.entries()) {
      assert.ok(l.box.w > 0 && l.box.h > 0);
      assert.ok(l.text.x >= l.box.x - 1 && l.text.x + l.text.w <= l.box.x + l.box.w + 1, `text fits ${JSON.stringify(l)}`);
      for (const other of geometry.labels.slice(i + 1)) {
        assert.ok(!overlap(l.box, other.box), `labels overlap: ${JSON.stringify([l, other])}`);
      }
      for (const e of geometry.edges) {
        assert.ok(
          !e.points.some((p) => inside(p, l.box)),
          `the line ${e.from}→${e.to} runs through the label of ${l.from}→${l.to}`,
        );
      }
    }
    await screenshot(page, 'first-contact-lineage');
  });

  test('the stations table fits a 1400 px window', async () => {
    const long = 'warehouse_inventory_adjustments_eu_central';
    assert.equal((await api('/v1/schemas', json({ name: 'inventory_adjustment_event_schema_v2', type: 'json', definition: { type: 'object' } }))).status, 201);
    assert.equal(
      (
        await api(
          '/v1/stations',
          json({
            name: long,
            description: 'Every stock adjustment from the warehouses of the central European region, kept for audits and replays',
            subjects: [
              'inventory.adjustments.eu-central.warehouse-frankfurt.>',
              'inventory.adjustments.eu-central.warehouse-vienna.>',
              'inventory.adjustments.eu-central.warehouse-zurich.>',
              'inventory.corrections.eu-central.>',
            ],
            schema: 'inventory_adjustment_event_schema_v2',
          }),
        )
      ).status,
      201,
    );
    await page.setViewportSize({ width: 1400, height: 900 });
    try {
      await page.goto(`${broker.url}/stations`);
      const table = page.getByTestId('stations-table');
      await table.getByRole('link', { name: long }).waitFor();
      const { table: tw, wrap: ww } = await table.evaluate((t) => ({
        table: t.scrollWidth,
        wrap: t.parentElement.clientWidth,
      }));
      assert.ok(tw <= ww, `the table is ${tw} px wide in a ${ww} px column`);
      const pageWidth = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(pageWidth <= 1400, `the page is ${pageWidth} px wide`);
      await screenshot(page, 'first-contact-stations-1400');
    } finally {
      await page.setViewportSize({ width: 1280, height: 900 });
    }
  });

  test('a station with 10,000 subjects keeps a card and a row of bounded height', async () => {
    const subjects = Array.from({ length: 10_000 }, (_, i) => `sensors.${String(i).padStart(5, '0')}.temp`);
    const created = await api('/v1/stations', json({ name: 'sensors', subjects }));
    assert.equal(created.status, 201, JSON.stringify(created.body?.error));
    assert.equal(created.body.subjects.length, 10_000);

    await page.goto(`${broker.url}/stations/sensors`);
    const card = page.getByTestId('subjects-card');
    await card.waitFor();
    assert.equal(await card.locator('.chip').count(), 8);
    const more = card.getByRole('button', { name: 'Show all 10,000 subjects of sensors' });
    assert.equal(await more.innerText(), '+ 9,992 more');
    const closed = await card.boundingBox();
    assert.ok(closed.height < 400, `card is ${closed.height} px tall`);

    await more.click();
    assert.equal(await card.getByRole('button', { name: 'Show the first 8 subjects of sensors' }).innerText(), 'Show fewer');
    assert.equal(await card.locator('.chip').count(), 10_000);
    const open = await card.boundingBox();
    assert.ok(open.height < 500, `open card is ${open.height} px tall`);
    const list = card.locator('.subject-list');
    const { scrollHeight, clientHeight } = await list.evaluate((e) => ({ scrollHeight: e.scrollHeight, clientHeight: e.clientHeight }));
    assert.ok(scrollHeight > clientHeight, 'the whole list scrolls inside its box');
    // Nothing else on the page lists them all either.
    const pageHeight = await page.evaluate(() => document.documentElement.scrollHeight);
    assert.ok(pageHeight < 3000, `the page is ${pageHeight} px tall`);
    await page.getByText('Must be captured by sensors.00000.temp').waitFor();
    assert.match(await page.getByText('Must be captured by').innerText(), /and 9,995 more subjects$/);
    await screenshot(page, 'first-contact-10000-subjects');

    await page.goto(`${broker.url}/stations`);
    const row = page.getByTestId('stations-table').getByRole('row', { name: /sensors/ });
    await row.waitFor();
    assert.equal(await row.locator('.chip').count(), 3);
    assert.equal(await row.getByRole('button', { name: 'Show all 10,000 subjects of sensors' }).innerText(), '+ 9,997 more');
    assert.ok((await row.boundingBox()).height < 200);
    assert.equal((await api('/v1/stations/sensors', { method: 'DELETE' })).status, 204);
  });

  test('binary payloads open as hex, with base64 and text one click away', async () => {
    assert.equal((await api('/v1/stations', json({ name: 'blobs', subjects: ['blobs.>'] }))).status, 201);
    const nc = await connect({ servers: broker.nats, name: 'blob-writer' });
    try {
      nc.publish('blobs.control', new Uint8Array([0x00, 0x01, 0x02, 0x1b, 0x41])); // UTF-8, but control characters
      nc.publish('blobs.invalid', new Uint8Array([0xff, 0xfe, 0x00, 0x80])); // not UTF-8
      nc.publish('blobs.text', new TextEncoder().encode('plain words'));
      await nc.flush();
    } finally {
      await nc.close();
    }
    await page.goto(`${broker.url}/stations/blobs`);
    const table = page.getByTestId('messages-table');
    await table.getByText('plain words').waitFor();
    await table.getByText('(binary, 5 B) 00 01 02 1b 41').waitFor();
    await table.getByText('(binary, 4 B) ff fe 00 80').waitFor();

    for (const [seq, hex, b64, kind] of [
      [1, '00 01 02 1b 41', 'AAECG0E=', 'control characters'],
      [2, 'ff fe 00 80', '//4AgA==', 'not UTF-8'],
    ]) {
      await page.goto(`${broker.url}/stations/blobs?seq=${seq}`);
      const view = page.getByTestId('message-view');
      await view.getByRole('heading', { name: `Message #${seq}` }).waitFor();
      const payload = view.getByTestId('payload');
      assert.equal(await view.getByRole('tab', { name: 'Hex' }).getAttribute('aria-selected'), 'true');
      assert.match(await payload.innerText(), new RegExp(`^00000000  ${hex}`));
      assert.match(await view.getByTestId('payload-kind').innerText(), new RegExp(kind));
      await view.getByRole('tab', { name: 'Base64' }).click();
      assert.equal(await payload.innerText(), b64);
      assert.equal(await view.getByRole('tab', { name: 'Text' }).isDisabled(), seq === 2, 'text only for UTF-8');
    }
    await screenshot(page, 'first-contact-binary');

    await page.goto(`${broker.url}/stations/blobs?seq=3`);
    const view = page.getByTestId('message-view');
    await view.getByRole('heading', { name: 'Message #3' }).waitFor();
    assert.equal(await view.getByRole('tab', { name: 'Text' }).getAttribute('aria-selected'), 'true');
    assert.equal(await view.getByTestId('payload').innerText(), 'plain words');
    await view.getByRole('tab', { name: 'Base64' }).click();
    assert.equal(await view.getByTestId('payload').innerText(), Buffer.from('plain words').toString('base64'));
  });
});

describe('sign-in offers the kind of credentials the broker uses', () => {
  let browser;
  const errors = [];

  before(async () => {
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    assert.deepEqual(errors, [], 'the console logged no script errors');
  });

  test('a broker with a user and password asks for them, not for a token', async () => {
    const broker = await startBroker(['--user', 'alice', '--pass', 'wonderland']);
    try {
      const refused = await fetch(`${broker.url}/v1/server`, { headers: { 'X-Requested-With': 'XMLHttpRequest' } });
      assert.equal(refused.status, 401);
      assert.deepEqual((await refused.json()).auth_methods, ['basic']);

      const page = await newPage(browser, errors);
      await page.goto(`${broker.url}/stations`);
      await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
      assert.equal(await page.getByTestId('auth-method').innerText(), 'This broker takes a user and password.');
      assert.equal(await page.getByLabel('Token', { exact: true }).count(), 0);
      await screenshot(page, 'first-contact-login-basic');
      await page.getByLabel('User').fill('alice');
      await page.getByLabel('Password').fill('wrong');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByText('The broker refused these credentials.').waitFor();
      await page.getByLabel('Password').fill('wonderland');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('heading', { level: 1, name: 'Stations' }).waitFor();
      await page.getByRole('button', { name: 'Sign out' }).waitFor();
      await page.close();
    } finally {
      await broker.stop();
    }
  });

  test('a broker with a token asks for the token only', async () => {
    const broker = await startBroker(['--auth', 's3cret']);
    try {
      const refused = await fetch(`${broker.url}/v1/server`);
      assert.equal(refused.status, 401);
      assert.deepEqual((await refused.json()).auth_methods, ['bearer']);
      const page = await newPage(browser, errors);
      await page.goto(`${broker.url}/`);
      await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
      assert.equal(await page.getByTestId('auth-method').innerText(), 'This broker takes a bearer token.');
      assert.equal(await page.getByLabel('User').count(), 0);
      await page.getByLabel('Token', { exact: true }).fill('s3cret');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
      await page.close();
    } finally {
      await broker.stop();
    }
  });
});
