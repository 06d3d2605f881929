// Tags and related posts in a real Chromium: an author tags a post, follows a tag link,
// relates another post through the picker (searching it first) and unrelates it again —
// boosted by the engine with JavaScript, and as plain HTML forms without it.
const { test, expect } = require('@playwright/test');

const { logIn, admin: ADMIN } = require('../login');

/// The titles the post page's Related section lists, in order.
function related(page) {
  return page.locator('#content section.related li a').allTextContents();
}

/// The whole flow; `boosted` says whether every step must stay in the same document.
async function tagRelateUnrelate(page, boosted) {
  const sameDocument = async () => {
    if (boosted) expect(await page.evaluate(() => window.__sxMarker)).toBe('same document');
  };
  await logIn(page);
  await page.goto('/new');
  if (boosted) {
    await expect(page.locator('html')).toHaveAttribute('data-sx-ready', 'true');
    await page.evaluate(() => { window.__sxMarker = 'same document'; });
  }
  const title = `Related ${boosted ? 'boosted' : 'plain'} ${Date.now()}`;
  await page.fill('input[name=title]', title);
  await page.fill('textarea[name=body]', 'About storage.');
  await page.fill('input[name=tags]', ' SX, Storage ');
  await page.click('form.editor button[type=submit]');
  await expect(page.locator('#content h1')).toHaveText(title);
  const postUrl = new URL(page.url()).pathname;
  await page.click('form.publish button');
  await expect(page.locator('#content .meta')).not.toContainText('Draft');
  await sameDocument();

  // Tags are links; Related ranks by tags shared (content-streams shares both, welcome one;
  // posts other tests wrote may share them too).
  await expect(page.locator('#content .tags a')).toHaveText(['sx', 'storage']);
  const ranked = await related(page);
  expect(ranked.indexOf('Posts are content streams')).toBeGreaterThanOrEqual(0);
  expect(ranked.indexOf('Posts are content streams')).toBeLessThan(ranked.indexOf('Welcome to SX'));
  await page.click('#content .tags a[href="/tags/storage"]');
  await expect(page).toHaveURL(/\/tags\/storage$/);
  await expect(page.locator('#content h2 a').first()).toHaveText(title);
  await sameDocument();

  // The picker: search, relate, back on the post with the relation first.
  await page.goto(postUrl);
  if (boosted) {
    await expect(page.locator('html')).toHaveAttribute('data-sx-ready', 'true');
    await page.evaluate(() => { window.__sxMarker = 'same document'; });
  }
  await page.click('#content a[href$="/relate"]');
  await expect(page.locator('#content h1')).toHaveText(`Related posts of ${title}`);
  await page.fill('input[name=q]', 'gig');
  await page.click('form.search button');
  await expect(page).toHaveURL(/\/relate\?q=gig$/);
  await expect(page.locator('#content section.candidates li a')).toHaveText(['Gig Night']);
  await page.click('#content section.candidates form.relate button');
  await expect(page).toHaveURL(new RegExp(`${postUrl}$`));
  await expect(page.locator('#content h1')).toHaveText(title);
  expect((await related(page))[0]).toBe('Gig Night');
  await sameDocument();
  // Both directions.
  await page.click('#content section.related a[href="/gig-night/"]');
  await expect(page.locator('#content h1')).toHaveText('Gig Night');
  expect(await related(page)).toContain(title);

  // Unrelating from the picker undoes it.
  await page.goto(`${postUrl}relate`);
  await page.click('#content section.related form.unrelate button');
  await expect(page).toHaveURL(new RegExp(`${postUrl}$`));
  expect(await related(page)).not.toContain('Gig Night');
}

test('tags, related posts and the relate picker, boosted', async ({ page }) => {
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await tagRelateUnrelate(page, true);
  await page.screenshot({ path: 'test-results/screens/related.png', fullPage: true });
  expect(errors).toEqual([]);
});

test.describe('without JavaScript', () => {
  test.use({ javaScriptEnabled: false });

  test('tags, related posts and the relate picker work as plain HTML', async ({ page }) => {
    await tagRelateUnrelate(page, false);
    await expect(page.locator('html')).not.toHaveAttribute('data-sx-ready', 'true');
  });
});
