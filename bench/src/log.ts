/**
 * The bench's progress log (on stderr, so that stdout carries only the report or, for the floor
 * process, its JSON answer) and the two small number helpers every part uses.
 */

/** Writes `[bench HH:MM:SS] msg` to stderr. */
export const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

/** `v` rounded to `d` decimals (figures are stored rounded: results.json is read by people). */
export const round = (v: number, d = 2): number => Math.round(v * 10 ** d) / 10 ** d;

/** Seconds since `t0`, a `process.hrtime.bigint()` reading. */
export const since = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;
