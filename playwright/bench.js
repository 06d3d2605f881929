// Browser measurements for BENCHMARKS.md (run by bench/browser, which starts the server):
// the bundle's gzip size, time from navigation start to the engine being ready, and the
// median time of a boosted navigation against a full page load of the same pages.
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
  const manifest = JSON.parse(fs.readFileSync(path.join(staticDir, 'client', 'manifest.json'), 'utf8'));
  const files = [manifest.wasm, manifest.script].map((f) => path.join(staticDir, 'client', f));
  const sizes = files.map((f) => {
    const bytes = fs.readFileSync(f);
    return { file: path.basename(f), raw: bytes.length, gzip: zlib.gzipSync(bytes, { level: 9 }).length };
  });

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
  await browser.close();

  const total = sizes.reduce((n, s) => n + s.gzip, 0);
  console.log(`| file | bytes | gzip -9 |`);
  console.log(`|---|---|---|`);
  for (const s of sizes) console.log(`| ${s.file} | ${s.raw} | ${kb(s.gzip)} KB |`);
  console.log(`| total (wasm + JS glue) | | ${kb(total)} KB |`);
  console.log('');
  console.log(`| measure (median of ${runs}) | ms |`);
  console.log(`|---|---|`);
  console.log(`| navigation start → engine ready (sx-ready) | ${median(ready).toFixed(1)} |`);
  console.log(`| full page load (loadEventEnd) | ${median(full).toFixed(1)} |`);
  console.log(`| boosted navigation (click → sx-navigated) | ${median(boosted).toFixed(1)} |`);
  console.log(`| boosted / full | ${(median(boosted) / median(full)).toFixed(2)} |`);
})().catch((e) => { console.error(e); process.exit(1); });
