// Drives the built-in dashboard in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium or $CHROMIUM). Run by tests/dashboard_browser.rs, which owns
// the broker: this script prints `STOP` when it wants the broker killed and waits
// for `STOPPED` on stdin, then `START` (same port) and waits for `STARTED`.
//
// Usage: node dashboard.mjs BASE_URL OUT_DIR
// Exit 0 after printing `PASS`; otherwise a `FAIL:` line on stderr and a
// screenshot in OUT_DIR. Every wait is on a page condition, with a timeout.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, outDir] = process.argv.slice(2);
const WAIT = 15000; // one condition
const OVERALL = 120000; // the whole run
mkdirSync(outDir, { recursive: true });

const stdin = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once('line', resolve));
const step = (text) => console.log(`step: ${text}`);
const expectLine = async (want) => {
  const got = await nextLine();
  if (got !== want) throw new Error(`expected ${want} from the test, got ${got}`);
};

// Console errors and page errors, and whether the broker was down on purpose at the time.
const problems = [];
let brokerDown = false;
// What a browser itself logs when it cannot reach a server: expected only while the broker is down.
const NETWORK = /WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|Failed to load resource/;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
// A page whose console errors and uncaught exceptions are recorded in `problems`.
async function watchedPage(name) {
  const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  p.setDefaultTimeout(WAIT);
  p.on('console', (msg) => {
    if (msg.type() === 'error') problems.push({ page: name, kind: 'console', text: msg.text(), brokerDown });
  });
  p.on('pageerror', (e) => problems.push({ page: name, kind: 'pageerror', text: String(e), brokerDown: false }));
  return p;
}

const page = await watchedPage('dashboard');

const overall = setTimeout(() => fail(new Error(`the run took over ${OVERALL / 1000} s`)), OVERALL);

async function fail(e) {
  const shot = join(outDir, 'failure.png');
  try {
    await page.screenshot({ path: shot, fullPage: true });
  } catch (err) {
    console.error(`no screenshot: ${err.message}`);
  }
  console.error(`FAIL: ${e.message}\nscreenshot: ${shot}\nproblems: ${JSON.stringify(problems)}`);
  await browser.close().catch(() => {});
  process.exit(1);
}

async function publish(topic, data) {
  const res = await fetch(new URL(`/api/publish/${topic}`, base), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(data),
  });
  if (!res.ok) throw new Error(`HTTP publish to ${topic}: ${res.status} ${await res.text()}`);
  return (await res.json()).seq;
}

const row = (topic, seq) => `#messages li[data-topic="${topic}"][data-seq="${seq}"]`;
const statValue = (name) => `[data-stat="${name}"] .value`;

async function waitForNote(pattern) {
  await page.waitForFunction(
    (p) => [...document.querySelectorAll('#messages li.note')].some((li) => new RegExp(p).test(li.textContent)),
    pattern.source,
  );
}

async function run() {
  step('open the dashboard');
  await page.goto(base);
  await page.waitForSelector('#status[data-state="connected"]');

  step('the WebSocket negotiated permessage-deflate without context takeover');
  const extensions = await page.evaluate(() => document.body.dataset.wsExtensions);
  if (!/^permessage-deflate; server_no_context_takeover; client_no_context_takeover$/.test(extensions)) {
    throw new Error(`ws.extensions is "${extensions}"`);
  }

  step('stats arrive and update');
  await page.waitForFunction(() => Number(document.body.dataset.statsSeq) >= 1);
  const seq0 = Number(await page.evaluate(() => document.body.dataset.statsSeq));
  await page.waitForFunction((s) => Number(document.body.dataset.statsSeq) > s, seq0);
  const conns = await page.textContent(statValue('connections'));
  if (!(Number(conns) >= 1)) throw new Error(`connections shows ${conns}`);

  step('watch a topic: its last value shows at once, then HTTP publishes arrive');
  const seq0Msg = await publish('dash.e2e', { n: 0, before: 'subscribe' });
  await page.fill('#watch-topic', 'dash.e2e');
  await page.click('#watch-btn');
  await waitForNote(/watching dash\.e2e/);
  await page.waitForSelector(`${row('dash.e2e', seq0Msg)}.replay`);
  const markup = { n: 1, text: '<img src=x onerror=alert(1)>' };
  const seq1 = await publish('dash.e2e', markup);
  const first = await page.waitForSelector(row('dash.e2e', seq1));
  const shown = await first.$eval('.d', (el) => el.textContent);
  if (shown !== JSON.stringify(markup)) throw new Error(`message shown as ${shown}`);
  if (await page.$('#messages img')) throw new Error('message data became markup');

  step('a message big enough to be compressed arrives intact');
  const board = { games: Array.from({ length: 20 }, (_, i) => ({ home: `team${i}`, away: `team${i + 1}`, score: [i, 2 * i], clock: `${i}:00` })) };
  if (JSON.stringify(board).length < 1024) throw new Error('the board is meant to be over 1 KB');
  const seqBig = await publish('dash.e2e', board);
  const big = await page.waitForSelector(row('dash.e2e', seqBig));
  const bigShown = await big.$eval('.d', (el) => el.textContent);
  if (bigShown !== JSON.stringify(board)) throw new Error(`the compressed message shows as ${bigShown.slice(0, 200)}`);

  step('the publish rate and the charts show it');
  await page.waitForFunction((sel) => parseFloat(document.querySelector(sel).textContent) > 0, statValue('messages_in_per_s'));
  const inked = await page.$eval('[data-stat="connections"] canvas', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    return d.some((v, i) => i % 4 === 3 && v > 0);
  });
  if (!inked) throw new Error('the connections chart is blank');

  step('the topic list shows the topic');
  await page.waitForSelector('#topic-rows tr[data-topic="dash.e2e"]');
  await page.fill('#topic-filter', 'nothing-matches');
  await page.waitForSelector('#topic-rows tr[data-topic="dash.e2e"]', { state: 'detached' });
  await page.fill('#topic-filter', 'e2e');
  await page.waitForSelector('#topic-rows tr[data-topic="dash.e2e"]');

  step('publish from the page and see the ack');
  await page.fill('#pub-topic', 'dash.e2e');
  await page.fill('#pub-body', '{"from": "page"}');
  await page.click('#pub-btn');
  await page.waitForFunction(() => /^ack: dash\.e2e seq \d+$/.test(document.querySelector('#pub-result').textContent));
  const seq2 = Number((await page.textContent('#pub-result')).split(' seq ')[1]);
  await page.waitForSelector(row('dash.e2e', seq2));
  await page.fill('#pub-topic', '$sys.stats');
  await page.click('#pub-btn');
  await page.waitForFunction(() => /^forbidden: .*\$sys\.stats/.test(document.querySelector('#pub-result').textContent));

  step('pause holds messages, resume shows them');
  await page.click('#pause-btn');
  const seq3 = await publish('dash.e2e', { n: 3 });
  await page.waitForFunction(() => /paused: [1-9]\d* new held/.test(document.querySelector('#paused-note').textContent));
  if (await page.$(row('dash.e2e', seq3))) throw new Error('a message showed while paused');
  await page.click('#pause-btn');
  await page.waitForSelector(row('dash.e2e', seq3));

  step('the broker restarts; the page says so and reconnects');
  brokerDown = true;
  console.log('STOP');
  await expectLine('STOPPED');
  await waitForNote(/connection lost/);
  await page.waitForFunction(() => /^reconnecting in \d+\.\d s…$/.test(document.querySelector('#status').textContent));
  console.log('START');
  await expectLine('STARTED');
  await page.waitForSelector('#status[data-state="connected"]');
  await waitForNote(/reconnected/);
  brokerDown = false;
  await publish('dash.e2e', { n: 'after restart' });
  await page.waitForFunction(() =>
    [...document.querySelectorAll('#messages li[data-topic="dash.e2e"] .d')].some((d) => d.textContent.includes('after restart')),
  );
  const seqAfter = Number(await page.evaluate(() => document.body.dataset.statsSeq));
  await page.waitForFunction((s) => Number(document.body.dataset.statsSeq) !== s, seqAfter);

  step('legible at phone width');
  await page.setViewportSize({ width: 375, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`the page is ${overflow} px wider than a phone screen`);
  await page.screenshot({ path: join(outDir, 'phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.screenshot({ path: join(outDir, 'laptop.png'), fullPage: true });

  step('the example pages show what is published');
  const ticker = await watchedPage('ticker');
  await ticker.goto(new URL('/examples/ticker.html', base).href);
  await ticker.waitForSelector('#status.ok');
  await publish('quotes.NASDAQ.AAPL', { symbol: 'AAPL', exchange: 'NASDAQ', price: 190.5, open: 189 });
  await ticker.waitForFunction(() => document.querySelector('.tile .px')?.textContent === '190.50');
  const scores = await watchedPage('scoreboard');
  await scores.goto(new URL('/examples/scoreboard.html', base).href);
  await scores.waitForSelector('#status.ok');
  await publish('scores.nba.game-1', { league: 'nba', home: 'Heat', away: 'Nets', home_score: 3, away_score: 2, clock: 'Q1 10:00' });
  await scores.waitForFunction(() => document.querySelector('.game .lead')?.textContent === 'Heat3');
  const danmaku = await watchedPage('danmaku');
  await danmaku.goto(new URL('/examples/danmaku.html', base).href);
  await danmaku.waitForSelector('#status.ok');
  await danmaku.fill('#text', 'first!');
  await danmaku.press('#text', 'Enter');
  await danmaku.waitForFunction(() => document.querySelector('#video .comment.mine')?.textContent === 'first!');

  step('no console errors');
  const bad = problems.filter((p) => !(p.kind === 'console' && p.brokerDown && NETWORK.test(p.text)));
  if (bad.length) throw new Error(`console or page errors: ${JSON.stringify(bad)}`);
  const tolerated = problems.length - bad.length;
  step(`${tolerated} network error(s) logged while the broker was down, as expected`);
}

try {
  await run();
  clearTimeout(overall);
  await browser.close();
  console.log('PASS');
  process.exit(0);
} catch (e) {
  await fail(e);
}
