// Prints one plain `N passed, N failed` line at the end, like the other test steps.
class CountReporter {
  constructor() { this.passed = 0; this.failed = 0; }
  onTestEnd(test, result) {
    if (result.status === 'passed') this.passed += 1;
    else if (result.status !== 'skipped' && result.retry === test.retries) this.failed += 1;
  }
  onEnd() { console.log(`playwright: ${this.passed} passed, ${this.failed} failed`); }
}
module.exports = CountReporter;
