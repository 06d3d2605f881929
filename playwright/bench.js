// Browser measurements for BENCHMARKS.md (run by bench/browser, which starts the server):
// the gzip size of the main bundle and, apart, of the editor island; time from navigation
// start to the engine being ready; the median time of a boosted navigation against a full
// page load of the same pages; and the island's boot on /new (logged in as bench/browser's
// admin): navigation start → island mounted, and import → mounted.
// Usage: node bench.js BASE_URL STATIC_DIR [RUNS]
const { chromium } = require('@playwright/test');
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const [base, staticDir, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 20);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const kb = (n) => (n / 1024).toFixed(1);

(async () => {
  // The bundle's content-hashed names, as the post-build step (`sx stamp-wasm`) listed them.
  const measure = (manifestName) => {
    const manifest = JSON.parse(fs.readFileSync(path.join(staticDir, 'client', manifestName), 'utf8'));
    return [manifest.wasm, manifest.script].map((f) => {
      const bytes = fs.readFileSync(path.join(staticDir, 'client', f));
      return { file: f, raw: bytes.length, gzip: zlib.gzipSync(bytes, { level: 9 }).length };
    });
  };
  const sizes = measure('manifest.json');
  const islandSizes = measure('manifest-sx-island.json');

  const browser = await chromium.launch(require('./chromium'));
  const page = await (await browser.newContext()).newPage();
  const pages = ['/', '/welcome/'];
  const ready = [], full = [], boosted = [];
  for (let i = 0; i < runs; i++) {
    const url = pages[i % 2];
    await page.goto(base + url, { waitUntil: 'load' });
    await page.waitForSelector('html[data-sx-ready=true]');
    const timing = await page.evaluate(() => ({
      load: performance.getEntriesByType('navigation')[0].loadEventEnd,
      ready: performance.getEntriesByName('sx-ready')[0].startTime,
    }));
    full.push(timing.load);
    ready.push(timing.ready);
    // A boosted navigation to the other page: click to the `sx-navigated` mark.
    const other = pages[(i + 1) % 2];
    boosted.push(await page.evaluate((href) => new Promise((resolve) => {
      const a = document.createElement('a');
      a.href = href;
      document.getElementById('content').prepend(a);
      const seen = performance.getEntriesByName('sx-navigated').length;
      const t0 = performance.now();
      a.click();
      const poll = () => {
        const marks = performance.getEntriesByName('sx-navigated');
        if (marks.length > seen) resolve(marks[marks.length - 1].startTime - t0);
        else setTimeout(poll, 1);
      };
      poll();
    }), other));
  }
  // The island on /new: log in, then load /new until the island is mounted.
  await page.goto(base + '/login');
  await page.fill('input[name=username]', 'bench');
  await page.fill('input[name=password]', 'bench-password');
  await page.click('form.stack button[type=submit]');
  await page.waitForSelector('form.logout');
  const islandReady = [], islandBoot = [];
  let islandOnReaderPages = 0;
  page.on('request', (r) => { if (r.url().includes('sx-island')) islandOnReaderPages += 1; });
  for (const url of pages) {
    await page.goto(base + url, { waitUntil: 'load' });
    await page.waitForSelector('html[data-sx-ready=true]');
  }
  const readerRequests = islandOnReaderPages;
  for (let i = 0; i < runs; i++) {
    await page.goto(base + '/new', { waitUntil: 'load' });
    await page.waitForSelector('[data-island-ready=true]');
    const t = await page.evaluate(() => new Promise((resolve) => {
      const poll = () => {
        const ready = performance.getEntriesByName('sx-island-ready')[0];
        const load = performance.getEntriesByName('sx-island-load')[0];
        if (ready && load) resolve({ ready: ready.startTime, boot: ready.startTime - load.startTime });
        else setTimeout(poll, 1);
      };
      poll();
    }));
    islandReady.push(t.ready);
    islandBoot.push(t.boot);
  }
  await browser.close();

  const table = (title, rows) => {
    const total = rows.reduce((n, s) => n + s.gzip, 0);
    console.log(`| ${title} | bytes | gzip -9 |`);
    console.log(`|---|---|---|`);
    for (const s of rows) console.log(`| ${s.file} | ${s.raw} | ${kb(s.gzip)} KB |`);
    console.log(`| total (wasm + JS glue) | | ${kb(total)} KB |`);
    console.log('');
  };
  table('main bundle (every page)', sizes);
  table('editor island (pages with [data-island] only)', islandSizes);
  console.log(`island requests while loading ${pages.join(', ')}: ${readerRequests}`);
  console.log('');
  console.log(`| measure (median of ${runs}) | ms |`);
  console.log(`|---|---|`);
  console.log(`| navigation start → engine ready (sx-ready) | ${median(ready).toFixed(1)} |`);
  console.log(`| full page load (loadEventEnd) | ${median(full).toFixed(1)} |`);
  console.log(`| boosted navigation (click → sx-navigated) | ${median(boosted).toFixed(1)} |`);
  console.log(`| boosted / full | ${(median(boosted) / median(full)).toFixed(2)} |`);
  console.log(`| /new: navigation start → island mounted (sx-island-ready) | ${median(islandReady).toFixed(1)} |`);
  console.log(`| /new: island import → mounted (sx-island-load → sx-island-ready) | ${median(islandBoot).toFixed(1)} |`);
})().catch((e) => { console.error(e); process.exit(1); });
