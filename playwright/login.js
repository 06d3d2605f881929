// Logs the suite's admin (servers.js) in through the login form: shared by the specs.
const { expect } = require('@playwright/test');
const { admin } = require('./servers');

async function logIn(page) {
  await page.goto('/login');
  await page.fill('input[name=username]', admin.user);
  await page.fill('input[name=password]', admin.password);
  await page.click('form.stack button[type=submit]');
  await expect(page.locator('form.logout')).toBeVisible();
}

module.exports = { logIn, admin };
