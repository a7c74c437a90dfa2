// Drives examples/chat-socketio.html, the classic Socket.IO chat, in headless Chromium
// (playwright-core, Debian's /usr/bin/chromium or $CHROMIUM) against a fanout broker. Run
// by tests/chat_browser.rs, which owns the broker.
//
// The page is served from a little server of its own here (so it talks to the broker
// across origins, as a page from another site does), and its CDN script
// (https://cdn.socket.io/4.8.1/socket.io.min.js) is answered with socket.io-client's
// own bundle from node_modules. Two pages join the room; a line typed in one shows once
// in each, and an HTTP publish shows in both.
//
// Usage: node chat-socketio.mjs BROKER_URL OUT_DIR
// Exit 0 after printing `PASS`; otherwise a `FAIL:` line on stderr and a screenshot in
// OUT_DIR. Every wait is on a page condition, with a timeout.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const [broker, outDir] = process.argv.slice(2);
const WAIT = 15000; // one condition
const OVERALL = 60000; // the whole run
const CDN = 'https://cdn.socket.io/4.8.1/socket.io.min.js';
const here = (p) => fileURLToPath(new URL(p, import.meta.url));
mkdirSync(outDir, { recursive: true });
const step = (text) => console.log(`step: ${text}`);

const html = readFileSync(here('../../examples/chat-socketio.html'));
const site = createServer((req, res) => {
  if (new URL(req.url, 'http://x').pathname !== '/chat-socketio.html') return res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
});
await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
const pageUrl = `http://127.0.0.1:${site.address().port}/chat-socketio.html?broker=${new URL(broker).host}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const context = await browser.newContext();
const outside = [];
await context.route('**/*', (route) => {
  const url = route.request().url();
  if (url === CDN) {
    return route.fulfill({ path: here('node_modules/socket.io-client/dist/socket.io.min.js'), contentType: 'application/javascript' });
  }
  if (url.startsWith('http://127.0.0.1:')) return route.continue();
  // Nothing else may leave the machine.
  outside.push(url);
  return route.abort();
});

const problems = [];
async function chatPage(name) {
  const p = await context.newPage();
  p.setDefaultTimeout(WAIT);
  p.on('console', (msg) => {
    if (msg.type() === 'error') problems.push({ page: name, kind: 'console', text: msg.text() });
  });
  p.on('pageerror', (e) => problems.push({ page: name, kind: 'pageerror', text: String(e) }));
  await p.goto(pageUrl);
  await p.waitForFunction(() => window.socket && window.socket.connected);
  return p;
}

const lines = (p) => p.$$eval('#messages li', (lis) => lis.map((li) => (li.className === 'mine' ? `me: ${li.textContent}` : li.textContent)));
const waitForLine = (p, text) =>
  p.waitForFunction((t) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent === t), text);
async function say(p, text) {
  await p.fill('#input', text);
  await p.press('#input', 'Enter');
}
async function expectLines(p, name, want) {
  const got = await lines(p);
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${name} shows ${JSON.stringify(got)}, not ${JSON.stringify(want)}`);
}

let alice;
const overall = setTimeout(() => fail(new Error(`the run took over ${OVERALL / 1000} s`)), OVERALL);

async function fail(e) {
  const shot = join(outDir, 'failure.png');
  try {
    await alice?.screenshot({ path: shot, fullPage: true });
  } catch (err) {
    console.error(`no screenshot: ${err.message}`);
  }
  console.error(`FAIL: ${e.message}\nscreenshot: ${shot}\nproblems: ${JSON.stringify(problems)}`);
  await browser.close().catch(() => {});
  process.exit(1);
}

async function run() {
  step('two pages join the room');
  alice = await chatPage('alice');
  const bob = await chatPage('bob');

  step('a line typed in one page shows in the other, and once in its own');
  await say(alice, 'hello from alice');
  await waitForLine(bob, 'hello from alice');
  await say(bob, 'hi alice');
  await waitForLine(alice, 'hi alice');

  step('an HTTP publish to the topic shows in both');
  const res = await fetch(new URL('/api/publish/chat.room1', broker), {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: 'the room closes at six',
  });
  if (!res.ok) throw new Error(`HTTP publish: ${res.status} ${await res.text()}`);
  await waitForLine(alice, 'the room closes at six');
  await waitForLine(bob, 'the room closes at six');
  // Both got the publish after every chat line, so an echo of a page's own line would show by now.
  await expectLines(alice, 'alice', ['me: hello from alice', 'hi alice', 'the room closes at six']);
  await expectLines(bob, 'bob', ['hello from alice', 'me: hi alice', 'the room closes at six']);

  step('the pages upgraded to WebSocket');
  for (const p of [alice, bob]) await p.waitForFunction(() => window.socket.io.engine.transport.name === 'websocket');
  await alice.screenshot({ path: join(outDir, 'chat.png'), fullPage: true });

  step('no console errors, nothing fetched from elsewhere');
  if (problems.length) throw new Error(`console or page errors: ${JSON.stringify(problems)}`);
  if (outside.length) throw new Error(`requests outside the machine: ${JSON.stringify(outside)}`);
}

try {
  await run();
  clearTimeout(overall);
  await browser.close();
  site.close();
  console.log('PASS');
  process.exit(0);
} catch (e) {
  await fail(e);
}
