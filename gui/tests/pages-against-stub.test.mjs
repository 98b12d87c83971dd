// The dead-letter, schema and lineage pages against a stub of the API shapes
// they are written for (docs/gui.md lists them). The broker does not serve
// those routes yet, so console.test.mjs can only see their "not provided" state;
// this keeps the pages' real code paths (dagre layout, resend progress, roll back,
// diff) exercised until it can. Replace it with real-broker checks when the
// routes land. It serves the built console from gui/dist.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { extname, join, normalize } from 'node:path';
import { after, before, test } from 'node:test';
import { launchBrowser, newPage, repo, screenshot } from './harness.mjs';

const dist = join(repo, 'gui', 'dist');
const now = new Date().toISOString();
const station = {
  name: 'orders',
  description: null,
  subjects: ['orders.>'],
  retention: { policy: 'limits', max_msgs: -1, max_bytes: -1, max_age_ms: 0, max_msgs_per_subject: -1, discard: 'old' },
  storage: 'file',
  duplicate_window_ms: 120000,
  flush_interval_ms: null,
  max_msg_size: -1,
  max_consumers: -1,
  deny_delete: false,
  deny_purge: false,
  metadata: {},
  created: now,
  state: { messages: 1, bytes: 3, first_seq: 1, first_time: now, last_seq: 1, last_time: now, num_subjects: 1, num_deleted: 0, groups: 1 },
  schema: 'order',
};
const routes = {
  'GET /v1/stations': { stations: [station] },
  'GET /v1/stations/orders/dls/messages': {
    messages: [
      {
        seq: 7,
        subject: 'orders.eu',
        time: now,
        headers: { 'Junction-Dls-Reason': 'schema', 'Junction-Dls-Error': '/total: expected number' },
        payload: '{"total":"x"}',
      },
    ],
    next_seq: 8,
  },
  'GET /v1/schemas': { schemas: [{ name: 'order', type: 'json', latest_version: 2 }] },
  'GET /v1/schemas/order': {
    name: 'order',
    type: 'json',
    versions: [
      { version: 1, definition: { type: 'object' }, created: now },
      { version: 2, definition: { type: 'object', required: ['total'] }, created: now },
    ],
  },
  'GET /v1/lineage/graph': {
    nodes: [
      { id: 'p1', kind: 'producer', label: 'nats client', protocol: 'nats' },
      { id: 's1', kind: 'station', label: 'orders' },
      { id: 'g1', kind: 'group', label: 'billing' },
    ],
    edges: [
      { from: 'p1', to: 's1', rate: 12.5 },
      { from: 's1', to: 'g1', rate: 12 },
    ],
  },
  'GET /v1/lineage/abc': { hops: [{ kind: 'publish', station: 'orders', time: now, protocol: 'nats' }, { kind: 'deliver', group: 'billing' }] },
};
const types = { '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.html': 'text/html' };

let server;
let url;
let browser;
let page;
const received = [];
const errors = [];

before(async () => {
  assert.ok(existsSync(join(dist, 'index.html')), 'gui/dist is built (npm run build, or any cargo build with Node.js)');
  server = http.createServer((req, res) => {
    const path = req.url.split('?')[0];
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const json = (status, value) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (req.method !== 'GET') {
        received.push(`${req.method} ${path} ${body}`);
        return json(200, {});
      }
      const answer = routes[`GET ${path}`];
      if (answer) return json(200, answer);
      if (path.startsWith('/v1')) return json(404, { error: { code: 'route_not_found', message: 'no route' } });
      const file = join(dist, normalize(path));
      if (file.startsWith(dist) && extname(file) && existsSync(file)) {
        res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
        return res.end(readFileSync(file));
      }
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(readFileSync(join(dist, 'index.html')));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${server.address().port}`;
  browser = await launchBrowser();
  page = await newPage(browser, errors);
});

after(async () => {
  await browser?.close();
  server?.close();
  assert.deepEqual(errors, [], 'the console logged no script errors');
});

test('dead letters show their reasons and resend the selected ones', async () => {
  await page.goto(`${url}/stations/orders/dls`);
  await page.getByText('/total: expected number').waitFor();
  await page.getByLabel('Select dead letter 7').check();
  await page.getByRole('button', { name: 'Resend selected (1)' }).click();
  await page.getByText('Resent 1 of 1.').waitFor();
  assert.ok(received.includes('POST /v1/stations/orders/dls/resend {"ids":[7]}'), received.join('\n'));
  await screenshot(page, 'stub-dead-letters');
});

test('schemas list versions, roll back and diff', async () => {
  await page.goto(`${url}/schemas?schema=order`);
  await page.getByText('Compare versions').waitFor();
  await page.locator('pre.diff .ins', { hasText: '"required"' }).waitFor();
  await page.getByRole('button', { name: 'Roll back to v1' }).click();
  await page.getByText('Rolled back').waitFor();
  assert.ok(received.includes('POST /v1/schemas/order/versions {"definition":{"type":"object"}}'), received.join('\n'));
  await screenshot(page, 'stub-schemas');
});

test('lineage lays out producer → station → group with rates, and shows a journey', async () => {
  await page.goto(`${url}/lineage?id=abc`);
  const graph = page.getByTestId('lineage-graph');
  await graph.waitFor();
  await graph.locator('.edge[data-from="p1"][data-to="s1"]').waitFor();
  await graph.locator('.edge[data-from="s1"][data-to="g1"]').waitFor();
  await graph.getByText('12.5/s').waitFor();
  await page.getByText('deliver').waitFor();
  await screenshot(page, 'stub-lineage');
});
