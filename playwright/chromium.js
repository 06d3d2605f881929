// How to launch Debian's Chromium here (see TOOLCHAIN.md): shared by the tests and bench.js.
module.exports = {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // Without the networking flags Chromium keeps trying hosts this machine cannot reach.
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
};
