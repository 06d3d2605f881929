// The servers the suite runs against (shared by playwright.config.js and the tests): the
// embedded blog, and a starter app made with `sx new` served in dev mode.
const os = require('os');
const path = require('path');

const blogPort = Number(process.env.SX_E2E_PORT || 8765);
const appPort = blogPort + 1;

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
};
