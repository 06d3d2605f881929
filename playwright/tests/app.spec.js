// An app of one's own: the starter `sx new` makes, served with `--dev` (see servers.js).
// Its links are boosted like the blog's, and saving a file reloads the open page.
const fs = require('fs');
const path = require('path');
const { test, expect } = require('@playwright/test');
const { app } = require('../servers');

async function open(page, url) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await expect(page.locator('html')).toHaveAttribute('data-sx-ready', 'true');
  await page.evaluate(() => { window.__sxMarker = 'same document'; });
  return errors;
}

test('the starter app boosts its link', async ({ page }) => {
  const errors = await open(page, `${app.url}/`);
  await expect(page.locator('#content h1')).toHaveText(path.basename(app.dir));
  await page.click('#content a[href="/about"]');
  await expect(page).toHaveURL(`${app.url}/about`);
  await expect(page.locator('#content h1')).toHaveText('About');
  expect(await page.evaluate(() => window.__sxMarker)).toBe('same document');
  await page.screenshot({ path: 'test-results/screens/starter.png', fullPage: true });
  expect(errors).toEqual([]);
});

test('the starter app form posts and answers', async ({ page }) => {
  await open(page, `${app.url}/`);
  await page.fill('input[name=name]', 'Ada');
  await page.click('button[type=submit]');
  await expect(page.locator('.greeting')).toHaveText('Hello, Ada!');
});

test('in dev mode a save reloads the open page', async ({ page }) => {
  const file = path.join(app.dir, 'app.sx');
  const before = fs.readFileSync(file, 'utf8');
  await open(page, `${app.url}/`);
  try {
    fs.writeFileSync(file, before.replace('Welcome!', 'Changed by a save!'));
    await expect(page.locator('#content')).toContainText('Changed by a save!', { timeout: 15_000 });
    // The page reloaded itself: a new document.
    expect(await page.evaluate(() => window.__sxMarker)).toBeUndefined();
  } finally {
    fs.writeFileSync(file, before);
  }
  await expect(page.locator('#content')).toContainText('Welcome!', { timeout: 15_000 });
});
