/**
 * Prints, per phase of `npm test` (scripts/test.sh), what passed and its time, then vitest's
 * totals as one plain line (`N passed, N failed, N skipped`); fails when no test ran or a phase
 * failed, so that a run that silently skipped everything cannot pass.
 *
 * Usage: node scripts/test-summary.ts PHASES_TSV
 *   PHASES_TSV: one line per phase, `LABEL<TAB>SECONDS<TAB>EXIT`, its vitest JSON report in
 *   LABEL.json beside it.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

interface VitestReport {
  readonly numPassedTests: number;
  readonly numFailedTests: number;
  readonly numPendingTests: number;
  readonly numTodoTests: number;
}

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/test-summary.ts PHASES_TSV");
  process.exit(2);
}
const phases = existsSync(file)
  ? readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => {
        const [label = "", seconds = "0", exit = "1"] = l.split("\t");
        return { label, seconds: Number(seconds), exit: Number(exit) };
      })
  : [];
const total = { passed: 0, failed: 0, skipped: 0 };
let bad = phases.length === 0;
for (const p of phases) {
  const report = join(dirname(file), `${p.label}.json`);
  if (!existsSync(report)) {
    console.log(`${p.label}: no report (exit ${p.exit}) in ${p.seconds} s`);
    bad = true;
    continue;
  }
  const r = JSON.parse(readFileSync(report, "utf8")) as VitestReport;
  const skipped = r.numPendingTests + r.numTodoTests;
  total.passed += r.numPassedTests;
  total.failed += r.numFailedTests;
  total.skipped += skipped;
  if (p.exit !== 0 || r.numPassedTests === 0) bad = true;
  console.log(
    `${p.label}: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped in ${p.seconds} s` +
      (p.exit !== 0 ? ` (exit ${p.exit})` : ""),
  );
}
const totals = `${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`;
// Kept for .ci/run, whose own last line it repeats after its timings.
writeFileSync(join(dirname(file), "summary.txt"), `${totals}\n`);
console.log(totals);
process.exit(bad || total.passed === 0 || total.failed > 0 ? 1 : 0);
