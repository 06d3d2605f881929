// The boost engine in a real Chromium: boot, swaps without reloads, history, title, scroll,
// forms, partial updates, fallbacks, pages without JavaScript, and isomorphism (a boosted
// #content equals a fully loaded one).
const { test, expect } = require('@playwright/test');

const { logIn, admin: ADMIN } = require('../login');
const { boostTo } = require('../boost');

/// Loads a page fully and waits for the engine; fails on any console error.
async function open(page, url) {
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await expect(page.locator('html')).toHaveAttribute('data-sx-ready', 'true');
  await page.evaluate(() => { window.__sxMarker = 'same document'; });
  return errors;
}

async function sameDocument(page) {
  return (await page.evaluate(() => window.__sxMarker)) === 'same document';
}

async function content(page) {
  return page.locator('#content').evaluate((el) => el.innerHTML);
}

test('boots and marks the page ready', async ({ page }) => {
  const errors = await open(page, '/');
  await expect(page.locator('#content h1')).toHaveText('Posts');
  await page.screenshot({ path: 'test-results/screens/index.png', fullPage: true });
  expect(errors).toEqual([]);
});

test('a boosted click swaps #content without a reload and sets the title', async ({ page }) => {
  const errors = await open(page, '/');
  await page.click('#content a[href="/welcome/"]');
  await expect(page).toHaveURL(/\/welcome\/$/);
  await expect(page.locator('#content h1')).toHaveText('Welcome to SX');
  await expect(page).toHaveTitle('Welcome to SX · SX blog');
  expect(await sameDocument(page)).toBe(true);
  // Focus moves to the new content, for screen readers.
  expect(await page.evaluate(() => document.activeElement.id)).toBe('content');
  await page.screenshot({ path: 'test-results/screens/post.png', fullPage: true });
  expect(errors).toEqual([]);
});

test('Back and Forward restore content, title and scroll', async ({ page }) => {
  await open(page, '/');
  // A tall page, so that scrolling means something (the footer is outside #content).
  await page.evaluate(() => {
    const spacer = document.createElement('div');
    spacer.style.height = '3000px';
    document.querySelector('footer').append(spacer);
    window.scrollTo(0, 400);
  });
  await page.evaluate(() => document.querySelector('#content a[href="/welcome/"]').click());
  await expect(page).toHaveURL(/\/welcome\/$/);
  await expect(page.locator('#content h1')).toHaveText('Welcome to SX');
  expect(await page.evaluate(() => window.scrollY)).toBe(0);

  await page.goBack();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator('#content h1')).toHaveText('Posts');
  await expect(page).toHaveTitle('Posts · SX blog');
  await expect.poll(() => page.evaluate(() => window.scrollY)).toBe(400);
  expect(await sameDocument(page)).toBe(true);

  await page.goForward();
  await expect(page).toHaveURL(/\/welcome\/$/);
  await expect(page.locator('#content h1')).toHaveText('Welcome to SX');
  expect(await sameDocument(page)).toBe(true);
});

test('a reload after boosted navigation is a whole page, never a fragment', async ({ page }) => {
  await open(page, '/');
  await page.click('#content a[href="/welcome/"]');
  await expect(page).toHaveURL(/\/welcome\/$/);
  await page.reload();
  await expect(page.locator('html')).toHaveAttribute('data-sx-ready', 'true');
  await expect(page.locator('header.site')).toBeVisible();
  await expect(page.locator('#content h1')).toHaveText('Welcome to SX');
  await page.goBack();
  await expect(page.locator('header.site')).toBeVisible();
  await expect(page.locator('#content h1')).toHaveText('Posts');
});

test('links the engine must leave alone are left alone', async ({ page }) => {
  await open(page, '/');
  // Runs after the engine's listener: records its decision, then stops the navigation.
  await page.evaluate(() => {
    document.addEventListener('click', (e) => {
      window.__prevented = e.defaultPrevented;
      e.preventDefault();
    });
    const add = (html) => document.getElementById('content').insertAdjacentHTML('afterbegin', html);
    add('<a id="plain" href="/welcome/">plain</a>');
    add('<a id="blank" href="/welcome/" target="_blank">blank</a>');
    add('<a id="download" href="/welcome/" download>download</a>');
    add('<a id="external" href="http://example.invalid/">external</a>');
    add('<a id="hash" href="#somewhere">hash</a>');
    add('<div sx-boost="false"><a id="opted-out" href="/welcome/">opted out</a></div>');
  });
  const decision = async (selector, modifiers) => {
    await page.click(selector, { modifiers });
    return page.evaluate(() => window.__prevented);
  };
  expect(await decision('#plain', ['Control'])).toBe(false);
  expect(await decision('#plain', ['Meta'])).toBe(false);
  expect(await decision('#plain', ['Shift'])).toBe(false);
  expect(await decision('#blank')).toBe(false);
  expect(await decision('#download')).toBe(false);
  expect(await decision('#external')).toBe(false);
  expect(await decision('#hash')).toBe(false);
  expect(await decision('#opted-out')).toBe(false);
  // Links outside an sx-boost element (the header) load whole pages.
  expect(await decision('header a[href="/feed"]')).toBe(false);
  // Last: the engine takes this one (and swaps #content).
  expect(await decision('#plain')).toBe(true);
});

test('a slow load shows the progress bar', async ({ page }) => {
  await open(page, '/');
  await page.route('**/welcome/', async (route) => {
    await new Promise((r) => setTimeout(r, 800));
    await route.continue();
  });
  await page.click('#content a[href="/welcome/"]');
  await expect(page.locator('#sx-progress.active')).toBeVisible();
  await expect(page.locator('#content h1')).toHaveText('Welcome to SX');
  await expect(page.locator('#sx-progress.active')).toHaveCount(0);
});

test('a response that is not an SX fragment falls back to a normal navigation', async ({ page }) => {
  await open(page, '/');
  await boostTo(page, '/feed');
  await expect(page).toHaveURL(/\/feed$/);
  await expect(page.locator('body')).toContainText('jsonfeed.org');
  expect(await sameDocument(page)).toBe(false);
});

test('a server error falls back to the error page', async ({ page }) => {
  await open(page, '/');
  await page.route('**/welcome/', (route) =>
    route.fulfill({ status: 500, contentType: 'text/html', body: '<h1>Broken on purpose</h1>' }));
  await page.click('#content a[href="/welcome/"]');
  await expect(page.locator('h1')).toHaveText('Broken on purpose');
  await expect(page).toHaveURL(/\/welcome\/$/);
});

test('sx-get fetches a fragment into its target without a history entry', async ({ page }) => {
  await open(page, '/');
  const before = await page.evaluate(() => history.length);
  await page.evaluate(() => {
    document.getElementById('content').insertAdjacentHTML('afterbegin',
      '<div id="box"></div><button id="load" sx-get="/welcome/" sx-target="#box">load</button>');
  });
  await page.click('#load');
  await expect(page.locator('#box article h1')).toHaveText('Welcome to SX');
  await expect(page).toHaveURL(/\/$/);
  expect(await page.evaluate(() => history.length)).toBe(before);
});

test('sx-post on a form sends it and swaps the answer into its target', async ({ page }) => {
  await open(page, '/');
  await page.evaluate(() => {
    document.getElementById('content').insertAdjacentHTML('afterbegin',
      '<div id="answer"></div><form id="f" method="post" action="/login" sx-post="/login" sx-target="#answer">'
      + '<input name="username" value="nobody"><input name="password" value="wrong">'
      + '<button id="send">send</button></form>');
  });
  await page.click('#send');
  await expect(page.locator('#answer')).toContainText('Wrong name or password.');
  await expect(page).toHaveURL(/\/$/);
  expect(await sameDocument(page)).toBe(true);
});

test('scripts in swapped content are not run', async ({ page }) => {
  const warnings = [];
  page.on('console', (m) => { if (m.type() === 'warning') warnings.push(m.text()); });
  await open(page, '/');
  await page.route('**/with-script/', (route) => route.fulfill({
    status: 200,
    contentType: 'text/sx; charset=utf-8',
    headers: { 'SX-Title': 'Script' },
    body: '(<> (h1 "With a script") (script "window.__scriptRan = true"))',
  }));
  await boostTo(page, '/with-script/');
  await expect(page.locator('#content h1')).toHaveText('With a script');
  expect(await page.evaluate(() => window.__scriptRan)).toBeUndefined();
  expect(await page.locator('#content script').count()).toBe(0);
  expect(warnings.join('\n')).toContain('not run');
});

test('a boosted form posts, follows the redirect and pushes the final URL', async ({ page }) => {
  await logIn(page);
  await open(page, '/new');
  await page.screenshot({ path: 'test-results/screens/editor.png', fullPage: true });
  // Invalid input: the form comes back with the text kept, in place.
  await page.fill('textarea[name=body]', 'Kept text');
  await page.evaluate(() => { document.querySelector('input[name=title]').required = false; });
  await page.click('form.editor button[type=submit]');
  await expect(page.locator('.problems')).toContainText('The title is empty.');
  await expect(page.locator('textarea[name=body]')).toHaveValue('Kept text');
  expect(await sameDocument(page)).toBe(true);

  const title = `Boosted ${Date.now()}`;
  await page.fill('input[name=title]', title);
  await page.click('form.editor button[type=submit]');
  await expect(page).toHaveURL(/\/boosted-\d+\/$/);
  await expect(page.locator('#content h1')).toHaveText(title);
  await expect(page).toHaveTitle(`${title} · SX blog`);
  expect(await sameDocument(page)).toBe(true);

  await page.click('form.publish button');
  await expect(page.locator('#content .meta')).not.toContainText('Draft');
  expect(await sameDocument(page)).toBe(true);
});

test('a change of login state loads the whole page, so the header is right', async ({ page, context }) => {
  // Logging in through the (boosted) form: the answer is for `ann`, the page was for nobody.
  await logIn(page);
  await expect(page.locator('html')).toHaveAttribute('data-sx-user', ADMIN.user);
  await open(page, '/');
  // The session ends elsewhere (expired, or logged out in another tab).
  await context.clearCookies();
  await page.click('#content a[href="/welcome/"]');
  await expect(page.locator('#content h1')).toHaveText('Welcome to SX');
  await expect(page.locator('header a[href="/login"]')).toBeVisible();
  await expect(page.locator('html')).toHaveAttribute('data-sx-user', '');
  expect(await sameDocument(page)).toBe(false);
});

test('pages work with JavaScript disabled', async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto('/');
  await expect(page.locator('html')).not.toHaveAttribute('data-sx-ready', 'true');
  await page.click('#content a[href="/welcome/"]');
  await expect(page).toHaveURL(/\/welcome\/$/);
  await expect(page.locator('#content h1')).toHaveText('Welcome to SX');
  // Log in, write a draft, publish it, log out: all plain HTML forms.
  await page.goto('/login?next=/new');
  await page.fill('input[name=username]', ADMIN.user);
  await page.fill('input[name=password]', ADMIN.password);
  await page.click('form.stack button[type=submit]');
  await expect(page).toHaveURL(/\/new$/);
  const title = `Without JS ${Date.now()}`;
  await page.fill('input[name=title]', title);
  await page.fill('textarea[name=body]', 'Plain forms.');
  await page.click('form.editor button[type=submit]');
  await expect(page.locator('#content h1')).toHaveText(title);
  await page.click('form.publish button');
  await expect(page.locator('#content .meta')).not.toContainText('Draft');
  await page.click('form.logout button');
  await expect(page.locator('header a[href="/login"]')).toBeVisible();
  await context.close();
});

async function sameContentEitherWay(page, pages) {
  for (const url of pages) {
    await page.goto(url);
    const full = await content(page);
    const fullTitle = await page.title();
    await open(page, url === '/' ? '/login' : '/');
    await boostTo(page, url);
    await expect(page).toHaveTitle(fullTitle);
    expect(await content(page), url).toBe(full);
    expect(await sameDocument(page)).toBe(true);
  }
}

test('isomorphism: a boosted #content equals a fully loaded one, page by page', async ({ page }) => {
  await page.goto('/');
  const links = await page.locator('#content a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  const pages = [...new Set(['/', ...links, '/login', '/no-such-post/', '/no/such/route'])];
  expect(pages.length).toBeGreaterThan(5);
  await sameContentEitherWay(page, pages);
});

test('isomorphism for an author: the editor and drafts', async ({ page }) => {
  await logIn(page);
  await page.goto('/new');
  await page.fill('input[name=title]', `Draft ${Date.now()}`);
  await page.fill('textarea[name=body]', 'A <b>draft</b> & more.\n\nSecond paragraph.');
  await page.click('form.editor button[type=submit]');
  await expect(page.locator('#content .meta')).toContainText('Draft');
  const draft = new URL(page.url()).pathname;
  await sameContentEitherWay(page, ['/', '/new', draft, `${draft}edit`, '/welcome/edit', '/login']);
});

test('screenshots of the login page', async ({ page }) => {
  await page.goto('/login');
  await page.screenshot({ path: 'test-results/screens/login.png', fullPage: true });
});

test('a damaged fragment falls back to loading the page', async ({ page }) => {
  await open(page, '/');
  let calls = 0;
  await page.route('**/welcome/', (route) => {
    calls += 1;
    if (calls === 1) {
      return route.fulfill({ status: 200, contentType: 'text/sx', body: '(div "unclosed' });
    }
    return route.continue();
  });
  await page.click('#content a[href="/welcome/"]');
  await expect(page).toHaveURL(/\/welcome\/$/);
  await expect(page.locator('#content h1')).toHaveText('Welcome to SX');
  expect(await sameDocument(page)).toBe(false);
});

// Another site's server: answers the engine's requests with an SX fragment that would run
// script if it were ever swapped in, and allows any origin to read it (so only the engine
// can refuse); a plain navigation gets its own page.
async function foreignServer() {
  const http = require('http');
  const server = http.createServer((req, res) => {
    const cors = {
      'access-control-allow-origin': '*',
      'access-control-allow-headers': '*',
      'access-control-allow-methods': 'GET, POST',
    };
    if (req.method === 'OPTIONS') { res.writeHead(204, cors); res.end(); return; }
    if (req.headers['sx-request']) {
      res.writeHead(200, { ...cors, 'content-type': 'text/sx; charset=utf-8' });
      res.end('(div :id "foreign" (raw! "<img src=x onerror=\\"window.__pwned = 1\\">") "foreign")');
    } else {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!DOCTYPE html><title>Elsewhere</title><h1>Another site</h1>');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/landing` };
}

for (const method of ['GET', 'POST']) {
  test(`a boosted ${method} redirected to another origin is never swapped in`, async ({ page }) => {
    const foreign = await foreignServer();
    try {
      await open(page, '/');
      await page.route('**/leave-here', (route) =>
        route.fulfill({ status: method === 'GET' ? 302 : 303, headers: { location: foreign.url } }));
      if (method === 'GET') {
        await boostTo(page, '/leave-here');
      } else {
        await page.evaluate(() => {
          const form = document.createElement('form');
          form.method = 'post';
          form.action = '/leave-here';
          form.innerHTML = '<input name="x" value="1"><button id="sx-test-submit">go</button>';
          document.getElementById('content').prepend(form);
        });
        await page.click('#sx-test-submit');
      }
      // The browser went to the other site, as it would without the engine...
      await expect(page).toHaveURL(foreign.url);
      await expect(page.locator('h1')).toHaveText('Another site');
      // ...and nothing from it ever ran in this origin's document.
      expect(await sameDocument(page)).toBe(false);
      expect(await page.evaluate(() => window.__pwned)).toBeUndefined();
    } finally {
      foreign.server.close();
    }
  });
}
