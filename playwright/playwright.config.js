// End-to-end checks in Debian's Chromium against real `sx serve` processes on fresh stores
// (servers.js): the blog, a starter app, and a blog whose flows run on an `sx kernel`.
// Run by .ci/test (SX_BIN names the server binary; default ../target/release/sx).
const { defineConfig } = require('@playwright/test');
const path = require('path');
const { bin, blog, app, kernel, host, admin } = require('./servers');

const port = blog.port;
const data = blog.data;

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
  webServer: [
    {
      command: `rm -rf "${data}" && exec "${bin}" serve --port ${port} --data "${data}"`,
      cwd: path.join(__dirname, '..'),
      url: `http://127.0.0.1:${port}/health`,
      reuseExistingServer: false,
      timeout: 60_000,
      env: {
        SX_STATIC_DIR: path.join(__dirname, '..', 'static'),
        SX_ADMIN_USER: admin.user,
        SX_ADMIN_PASSWORD: admin.password,
        SX_WORKERS: '2',
        RUST_LOG: 'warn',
      },
    },
    {
      // A starter app made by `sx new`, served in dev mode (tests/app.spec.js).
      command: `rm -rf "${path.dirname(app.dir)}" && mkdir -p "${path.dirname(app.dir)}" && "${bin}" new "${app.dir}" && exec "${bin}" serve --app "${app.dir}" --dev --port ${app.port} --data "${app.data}"`,
      cwd: path.join(__dirname, '..'),
      url: `${app.url}/health`,
      reuseExistingServer: false,
      timeout: 60_000,
      env: {
        SX_STATIC_DIR: path.join(__dirname, '..', 'static'),
        SX_WORKERS: '2',
        RUST_LOG: 'warn',
      },
    },
    {
      // The flow kernel of the blog below (tests/flows.spec.js, "sx kernel").
      command: `rm -rf "${kernel.data}" && exec "${bin}" kernel --port ${kernel.port} --data "${kernel.data}"`,
      cwd: path.join(__dirname, '..'),
      url: `${kernel.url}/health`,
      reuseExistingServer: false,
      timeout: 60_000,
      env: {
        SX_KERNEL_TOKEN: kernel.token,
        RUST_LOG: 'warn',
      },
    },
    {
      // The blog again, its flows on the kernel above; it registers them every two seconds
      // until the kernel answers.
      command: `rm -rf "${host.data}" && exec "${bin}" serve --port ${host.port} --data "${host.data}"`,
      cwd: path.join(__dirname, '..'),
      url: `${host.url}/health`,
      reuseExistingServer: false,
      timeout: 60_000,
      env: {
        SX_KERNEL_URL: kernel.url,
        SX_KERNEL_TOKEN: kernel.token,
        SX_STATIC_DIR: path.join(__dirname, '..', 'static'),
        SX_ADMIN_USER: admin.user,
        SX_ADMIN_PASSWORD: admin.password,
        SX_WORKERS: '2',
        RUST_LOG: 'warn',
      },
    },
  ],
});
