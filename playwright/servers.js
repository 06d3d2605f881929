// The servers the suite runs against (shared by playwright.config.js and the tests): the
// embedded blog, a starter app made with `sx new` served in dev mode, and a second blog
// whose flows run on an `sx kernel` of their own (docs/apps.md, "Flows in a separate
// process").
const os = require('os');
const path = require('path');

const blogPort = Number(process.env.SX_E2E_PORT || 8765);
const appPort = blogPort + 1;
const kernelPort = blogPort + 2;
const hostPort = blogPort + 3;

module.exports = {
  bin: process.env.SX_BIN || path.join(__dirname, '..', 'target', 'release', 'sx'),
  blog: { port: blogPort, data: path.join(os.tmpdir(), `sx-e2e-${blogPort}`) },
  app: {
    port: appPort,
    url: `http://127.0.0.1:${appPort}`,
    // `sx new` makes the folder; the test edits its app.sx.
    dir: path.join(os.tmpdir(), `sx-e2e-app-${appPort}`, 'starter'),
    data: path.join(os.tmpdir(), `sx-e2e-app-${appPort}`, 'data'),
  },
  // `sx kernel`: keeps the flow instances of the blog below (tests/flows.spec.js).
  kernel: {
    port: kernelPort,
    url: `http://127.0.0.1:${kernelPort}`,
    data: path.join(os.tmpdir(), `sx-e2e-kernel-${kernelPort}`),
    token: 'e2e-kernel-token-not-secret',
  },
  // A blog like the first, with SX_KERNEL_URL naming the kernel above.
  host: {
    port: hostPort,
    url: `http://127.0.0.1:${hostPort}`,
    data: path.join(os.tmpdir(), `sx-e2e-host-${hostPort}`),
  },
  admin: { user: 'ann', password: 'correct horse battery' },
};
