/**
 * Prints vitest's totals as one plain line (`N passed, N failed, N skipped`) and fails when
 * no test ran, so that a run that silently skipped everything cannot pass.
 *
 * Usage: node scripts/test-summary.ts VITEST_JSON_REPORT
 */
import { readFileSync } from "node:fs";

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/test-summary.ts VITEST_JSON_REPORT");
  process.exit(2);
}
const r = JSON.parse(readFileSync(file, "utf8")) as {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
};
const skipped = r.numPendingTests + r.numTodoTests;
console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
process.exit(r.numPassedTests === 0 || r.numFailedTests > 0 ? 1 : 0);
