/**
 * Loaded into every Node.js process of a measured run by the benchmark (NODE_OPTIONS=--require):
 * at exit, appends one line to $KT_BENCH_CPU_LOG with the process's own CPU time and peak
 * memory, exactly (the /proc poller only sees a process until its last poll before it exits).
 *
 * Line: {"pid","argv","userUs","systemUs","maxRssKb"}. The engine stops its plugins with
 * SIGINT (then SIGKILL after a grace period); a Node.js process dies of SIGINT without an
 * `exit` event, so a handler is added for SIGINT and SIGTERM when the process has none: it
 * records and exits as the signal would have (128 + number). Benchmark only: never loaded by
 * the operator's commands.
 */
"use strict";

const { appendFileSync } = require("node:fs");

const file = process.env.KT_BENCH_CPU_LOG;
let written = false;

function record() {
  if (written || !file) return;
  written = true;
  const u = process.resourceUsage();
  const line = {
    pid: process.pid,
    argv: process.argv.slice(1, 3).join(" "),
    userUs: u.userCPUTime,
    systemUs: u.systemCPUTime,
    maxRssKb: u.maxRSS,
  };
  try {
    appendFileSync(file, `${JSON.stringify(line)}\n`);
  } catch {
    // The measurement is lost, not the process.
  }
}

if (file) {
  process.on("exit", record);
  for (const [signal, number] of [
    ["SIGINT", 2],
    ["SIGTERM", 15],
  ]) {
    process.on(signal, () => {
      if (process.listenerCount(signal) > 1) return; // the process handles it itself
      record();
      process.exit(128 + number);
    });
  }
}
