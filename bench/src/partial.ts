/**
 * Figures kept while a measurement runs: a run of 10,000 users takes over an hour before its
 * row is written, so what it has measured so far is written to a file of its own (overwritten by
 * each run), and a run stopped later still leaves its figures (bench/partial-10000-split.json
 * was put together from such a file).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { REPO } from "./local.ts";
import { log } from "./log.ts";

/** Where a run keeps what it has measured before its row is complete. */
const PARTIAL_FILE = join(process.env.KEYSTONE_TOTP_STATE ?? join(REPO, ".local"), "bench-partial.json");

/** Writes `figures`, dated, to the partial file. */
export function writePartial(figures: Record<string, unknown>): void {
  mkdirSync(dirname(PARTIAL_FILE), { recursive: true });
  writeFileSync(PARTIAL_FILE, `${JSON.stringify({ date: new Date().toISOString(), ...figures }, null, 2)}\n`);
  log(`partial figures kept in ${PARTIAL_FILE}`);
}
