// Shared pieces of the browser tests: a real `junction serve` on ephemeral
// loopback ports with a temporary data dir, and headless Chromium driven by
// playwright-core.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '..', '..');
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, 'target');
export const screenshotDir = join(targetDir, 'gui-screenshots');

/** The broker binary: $JUNCTION_BIN, else target/debug/junction (built by cargo). */
export function junctionBin() {
  const bin = process.env.JUNCTION_BIN ?? join(targetDir, 'debug', 'junction');
  if (!existsSync(bin)) {
    throw new Error(`no broker binary at ${bin}: run \`cargo build --bin junction\` first (or set JUNCTION_BIN)`);
  }
  return bin;
}

/** Chromium: $CHROMIUM, else /usr/bin/chromium (Debian's `chromium` package). */
export function chromiumPath() {
  const path = process.env.CHROMIUM ?? '/usr/bin/chromium';
  if (!existsSync(path)) {
    throw new Error(`no Chromium at ${path}: install it (apt-get install -y chromium) or set CHROMIUM`);
  }
  return path;
}

/**
 * Starts `junction serve` and resolves once it has printed its bound addresses
 * (HTTP, NATS, and MQTT when `mqtt` is set; every listener on 127.0.0.1:0, so the
 * OS picks free ports). `extra` adds flags (e.g. ['--auth', 'token']); `dataDir`
 * starts it on that directory (kept on stop), to restart a broker on its data.
 */
export async function startBroker(extra = [], { mqtt = false, dataDir: keptDir } = {}) {
  // A data dir given by the caller (to restart on it) is the caller's to remove.
  const dataDir = keptDir ?? mkdtempSync(join(tmpdir(), 'junction-gui-test-'));
  const args = [
    'serve',
    '--http-listen', '127.0.0.1:0',
    '--nats-listen', '127.0.0.1:0',
    '--mqtt-listen', mqtt ? '127.0.0.1:0' : 'off',
    '--data-dir', dataDir,
    ...extra,
  ];
  const child = spawn(junctionBin(), args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    // No disk fence or storage_low alarm: the console tests must not depend on
    // how full the machine's disk is (a shared CI disk is often past 90%).
    env: {
      ...process.env,
      NO_COLOR: '1',
      RUST_LOG: process.env.RUST_LOG ?? 'info',
      JUNCTION_LIMITS__DISK_MAX_USED_PERCENT: process.env.JUNCTION_LIMITS__DISK_MAX_USED_PERCENT ?? '0',
    },
  });
  let log = '';
  const addresses = await new Promise((resolveAddr, reject) => {
    const found = {};
    const onData = (chunk) => {
      log += chunk.toString();
      const clean = log.replace(/\x1b\[[0-9;]*m/g, '');
      const http = /Listening for HTTP on (\S+)/.exec(clean);
      const nats = /Listening for (?:NATS )?client connections on (\S+)/.exec(clean);
      const mqttAddr = /Listening for MQTT clients on (\S+)/.exec(clean);
      if (http) found.http = http[1];
      if (nats) found.nats = nats[1];
      if (mqttAddr) found.mqtt = mqttAddr[1];
      if (found.http && found.nats && (!mqtt || found.mqtt)) resolveAddr(found);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`junction exited (${code}) before listening:\n${log}`)));
    child.on('error', reject);
    // A failure guard only: the broker says where it listens within a second or two.
    setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`junction did not say where it listens within 60 s:\n${log}`));
    }, 60_000).unref();
  });
  return {
    url: `http://${addresses.http}`,
    nats: addresses.nats,
    /** `mqtt://host:port` when started with `{ mqtt: true }`. */
    mqtt: addresses.mqtt ? `mqtt://${addresses.mqtt}` : undefined,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (!keptDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A page that fails the test on any uncaught script error. The browser logs
 * every error answer it gets as a console error: `expected` matches the ones
 * the test provokes on purpose (4xx by default). */
export async function newPage(browser, errors, { expected = /status of 40[0-9]/ } = {}) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !expected.test(m.text())) errors.push(`console error: ${m.text()}`);
  });
  page.setDefaultTimeout(15_000);
  return page;
}

export async function screenshot(page, name) {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage: true });
}
