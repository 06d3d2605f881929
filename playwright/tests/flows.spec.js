// Durable flows in a real Chromium against the blog: the newsletter digest (docs/apps.md,
// "The blog's flows"). Editing a published newsletter suspends a `blog-digest` instance at
// `approval`, drawn on /flows with that node marked; Resume sends it. An urgent edit sends at
// once. One scenario, every engine: the blog running its flows itself, and a blog whose flows
// run on an `sx kernel` in a second process (servers.js), where the kernel's own /flows must
// list the same instances.
const { test, expect } = require('@playwright/test');
const { blog, kernel, host, admin: ADMIN } = require('../servers');
const { logIn } = require('../login');

const TARGETS = [
  { name: 'in-process', base: `http://127.0.0.1:${blog.port}`, kernel: null },
  { name: 'sx kernel', base: host.url, kernel },
];

/// Saves the edit form of `slug` (urgent or not) and waits for the post's page.
async function edit(page, slug, { urgent }) {
  await page.goto(`/${slug}/edit`);
  await expect(page.locator('input[name=category]')).toHaveValue('newsletter');
  const box = page.locator('input[name=urgent]');
  await expect(box).not.toBeChecked();
  if (urgent) await box.check();
  await page.fill('textarea[name=body]', `Edited ${urgent ? 'urgently' : 'calmly'}.`);
  await page.click('form.editor button[type=submit]');
  await expect(page).toHaveURL(new RegExp(`/${slug}/$`));
}

/// The digest instances of `slug` on /flows, newest first.
function digests(page, slug) {
  return page.locator(`article.flow[id^="flow-digest-${slug}-"]`);
}

/// Reloads /flows until `check` passes (the runner works beside the requests).
async function onFlowsUntil(page, check) {
  await expect(async () => {
    await page.goto('/flows');
    await check();
  }).toPass({ timeout: 15_000, intervals: [100, 200, 500] });
}

/// The instance `id` as the flow kernel lists it (its JSON /flows, with the kernel token).
async function onKernel(request, target, id) {
  const answer = await request.get(`${target.kernel.url}/flows`, {
    headers: { authorization: `Bearer ${target.kernel.token}`, accept: 'application/json' },
  });
  expect(answer.status()).toBe(200);
  return (await answer.json()).find((inst) => inst.id === id);
}

/// On a kernel target, the kernel itself has instance `id` with `status`: it lives there.
async function expectOnKernel(request, target, id, status) {
  if (!target.kernel) return;
  await expect
    .poll(async () => (await onKernel(request, target, id))?.status, { timeout: 5_000 })
    .toBe(status);
}

for (const target of TARGETS) {
  test.describe(target.name, () => {
    test.use({ baseURL: target.base });
    const shot = (name) => `test-results/screens/flows-${target.kernel ? 'kernel-' : ''}${name}.png`;

    test('the newsletter digest waits for approval on /flows, and an urgent edit sends at once', async ({ page, request }) => {
      const errors = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      await logIn(page);

      // A newsletter post, published.
      const title = `Newsletter ${Date.now()}`;
      const slug = title.toLowerCase().replace(/ /g, '-');
      await page.goto('/new');
      await page.fill('input[name=title]', title);
      await page.fill('textarea[name=body]', 'News of the week.');
      await page.fill('input[name=category]', 'newsletter');
      await page.click('form.editor button[type=submit]');
      await expect(page).toHaveURL(new RegExp(`/${slug}/$`));
      await page.click('form.publish button');
      await expect(page.locator('#content .meta')).not.toContainText('Draft');

      // Publishing starts no digest; an edit that is not urgent does, and it waits. (With a
      // kernel, a start made before the host has registered is kept by the host and handed
      // over within two seconds: the poll waits for the instance to appear.)
      await page.goto('/flows');
      await expect(digests(page, slug)).toHaveCount(0);
      await edit(page, slug, { urgent: false });
      await onFlowsUntil(page, async () => {
        await expect(digests(page, slug)).toHaveCount(1, { timeout: 500 });
        await expect(digests(page, slug).first()).toHaveAttribute('data-status', 'suspended', { timeout: 500 });
      });
      const waiting = digests(page, slug).first();
      const id = (await waiting.getAttribute('id')).replace(/^flow-/, '');
      await expectOnKernel(request, target, id, 'suspended');
      await expect(waiting.locator('h2')).toContainText('blog-digest');
      await expect(waiting.locator('.status')).toHaveText('suspended');
      await expect(waiting.locator('.meta strong')).toHaveText('approval');
      // The drawing: every node of the flow, the one it waits at marked.
      const graph = waiting.locator('svg.flow-graph');
      await expect(graph).toBeVisible();
      for (const node of ['urgent?', 'approval', 'digest-sent', 'end']) {
        await expect(graph.locator(`g.node[data-node="${node}"]`)).toHaveCount(1);
      }
      await expect(graph.locator('g.node.current')).toHaveCount(1);
      await expect(graph.locator('g.node.current[data-node="approval"]')).toHaveCount(1);
      await expect(waiting.locator('ol.steps')).toContainText('urgent?: false');
      await expect(waiting.locator('ol.steps')).not.toContainText('digest-sent');
      await page.screenshot({ path: shot('suspended'), fullPage: true });

      // Resume: the digest is sent and the instance is done.
      await waiting.locator('form.resume button').click();
      await expect(page).toHaveURL(/\/flows$/);
      await onFlowsUntil(page, async () => {
        await expect(page.locator(`article.flow[id="flow-${id}"]`)).toHaveAttribute('data-status', 'done', { timeout: 500 });
      });
      const done = page.locator(`article.flow[id="flow-${id}"]`);
      await expect(done.locator('.status')).toHaveText('done');
      await expect(done.locator('ol.steps li')).toHaveText([
        'urgent?: false',
        'approval: done',
        `digest-sent: "digest of ${slug} sent"`,
      ]);
      await expect(done.locator('g.node.current[data-node="end"]')).toHaveCount(1);
      await expect(done.locator('form.resume')).toHaveCount(0);
      await expect(done.locator('form.cancel')).toHaveCount(0);
      await expectOnKernel(request, target, id, 'done');
      await page.screenshot({ path: shot('done'), fullPage: true });

      // An urgent edit: a new instance, done without waiting.
      await edit(page, slug, { urgent: true });
      await onFlowsUntil(page, async () => {
        await expect(digests(page, slug)).toHaveCount(2, { timeout: 500 });
        await expect(digests(page, slug).first()).toHaveAttribute('data-status', 'done', { timeout: 500 });
      });
      const urgent = digests(page, slug).first();
      const urgentId = (await urgent.getAttribute('id')).replace(/^flow-/, '');
      expect(urgentId).not.toBe(id);
      await expectOnKernel(request, target, urgentId, 'done');
      await expect(urgent.locator('ol.steps li')).toHaveText([
        'urgent?: true',
        `digest-sent: "digest of ${slug} sent"`,
      ]);
      await expect(urgent.locator('g.node.current[data-node="end"]')).toHaveCount(1);
      expect(errors).toEqual([]);
    });
  });
}
