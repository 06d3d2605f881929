// End-to-end checks in Debian's Chromium against a real `sx serve` on a fresh store.
// Run by .ci/test (SX_BIN names the server binary; default ../target/release/sx).
const { defineConfig } = require('@playwright/test');
const os = require('os');
const path = require('path');

const port = Number(process.env.SX_E2E_PORT || 8765);
const bin = process.env.SX_BIN || path.join(__dirname, '..', 'target', 'release', 'sx');
const data = path.join(os.tmpdir(), `sx-e2e-${port}`);

module.exports = defineConfig({
  testDir: './tests',
  timeout: 30_000,
  workers: 1,
  reporter: [['list'], ['./count-reporter.js']],
  outputDir: './test-results',
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    screenshot: 'only-on-failure',
    launchOptions: require('./chromium'),
  },
  webServer: {
    command: `rm -rf "${data}" && exec "${bin}" serve --port ${port} --data "${data}"`,
    cwd: path.join(__dirname, '..'),
    url: `http://127.0.0.1:${port}/health`,
    reuseExistingServer: false,
    timeout: 60_000,
    env: {
      SX_STATIC_DIR: path.join(__dirname, '..', 'static'),
      SX_ADMIN_USER: 'ann',
      SX_ADMIN_PASSWORD: 'correct horse battery',
      SX_WORKERS: '2',
      RUST_LOG: 'warn',
    },
  },
});
