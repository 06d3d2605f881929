// Boosts a navigation to `href` as a reader's click would: a link put inside #content (where
// the engine boosts links) and clicked. Shared by the specs.
async function boostTo(page, href) {
  await page.evaluate((href) => {
    const a = document.createElement('a');
    a.href = href;
    a.id = 'sx-test-link';
    a.textContent = 'test link';
    document.getElementById('content').prepend(a);
  }, href);
  await page.click('#sx-test-link');
}

module.exports = { boostTo };
