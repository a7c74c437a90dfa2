// Drives examples/iframe.html in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium or $CHROMIUM) against a broker the test started: the page's
// hidden iframe streams /iframe/{topic}?callback=onQuote, and each HTTP publish
// must reach window.onQuote as its value, markup never running as markup.
//
// Usage: node iframe.mjs BASE_URL OUT_DIR
// Exit 0 after printing `PASS`; otherwise a `FAIL:` line on stderr and a
// screenshot in OUT_DIR. Every wait is on a condition, with a timeout.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, outDir] = process.argv.slice(2);
const WAIT = 15000;
const TOPIC = 'iframe.e2e';
mkdirSync(outDir, { recursive: true });
const step = (text) => console.log(`step: ${text}`);

const problems = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
page.setDefaultTimeout(WAIT);
page.on('console', (msg) => {
  if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
});
page.on('pageerror', (e) => problems.push(`pageerror: ${e}`));

async function fail(e) {
  const shot = join(outDir, 'iframe-failure.png');
  await page.screenshot({ path: shot, fullPage: true }).catch((err) => console.error(`no screenshot: ${err.message}`));
  console.error(`FAIL: ${e.message}\nscreenshot: ${shot}\nproblems: ${JSON.stringify(problems)}`);
  await browser.close().catch(() => {});
  process.exit(1);
}

async function publish(contentType, body) {
  const res = await fetch(new URL(`/api/publish/${TOPIC}`, base), {
    method: 'POST',
    headers: { 'content-type': contentType },
    body,
  });
  if (!res.ok) throw new Error(`HTTP publish: ${res.status} ${await res.text()}`);
}

// Until the page's stream has subscribed, a publish would reach nobody.
async function streamOpen() {
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    const res = await fetch(new URL(`/api/topics/${TOPIC}`, base));
    if (res.ok && (await res.json()).subscribers >= 1) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no stream subscribed to ${TOPIC} within ${WAIT} ms`);
}

const lastShown = () => page.textContent('#last');

async function run() {
  step('open the example; its hidden iframe opens the stream');
  await page.goto(new URL(`/examples/iframe.html?topic=${TOPIC}`, base).href);
  await streamOpen();

  step('a JSON quote reaches window.onQuote as an object');
  await publish('application/json', JSON.stringify({ symbol: 'AAPL', price: 101.25 }));
  await page.waitForFunction(() => document.querySelector('#last').textContent === '101.25');
  await page.waitForSelector('#status.ok');

  step('text arrives as a string, markup and all, and never runs');
  const evil = '</script><script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">\u2028';
  await publish('text/plain', evil);
  await page.waitForFunction((want) => document.querySelector('#last').textContent === want, JSON.stringify(evil));
  const pwned = await page.evaluate(() => window.pwned);
  if (pwned !== undefined) throw new Error(`a payload ran as code: window.pwned = ${pwned}`);
  const frames = await page.$$eval('iframe', (fs) => fs.map((f) => f.contentDocument.querySelectorAll('img').length));
  if (frames.some((n) => n > 0)) throw new Error('a payload became markup in the stream document');

  step('binary arrives as base64');
  await publish('application/octet-stream', new Uint8Array([0, 1, 254, 255]));
  await page.waitForFunction(() => document.querySelector('#last').textContent === '"AAH+/w=="');

  await page.screenshot({ path: join(outDir, 'iframe.png') });
  if (problems.length) throw new Error(`errors on the page: ${problems.join('; ')}`);
  console.log(`last shown: ${await lastShown()}`);
}

try {
  await run();
  await browser.close();
  console.log('PASS');
} catch (e) {
  await fail(e);
}
