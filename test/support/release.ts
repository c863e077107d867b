/**
 * Earlier versions of this project, run for real by the upgrade tests: the stack an earlier
 * version writes is the one operators have, fields and quirks included, which no state rebuilt
 * from today's code can stand in for. A version is `git archive COMMIT` into
 * `.local/keystone-totp-COMMIT` with its own `npm ci` (kept there for later runs), and its own
 * `scripts/provision.ts` runs on a stack of this version: the same file backend, passphrase
 * and config file.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "./keystone.ts";
import { collect } from "./process.ts";
import type { RunResult, TestStack } from "./pulumi.ts";

/** `npm ci` of an earlier version, in ms: about 1 min on 2 cores with a warm npm cache. */
const INSTALL_TIMEOUT_MS = 600_000;

/**
 * The folder of the version at `commit` with its own node_modules, made on first use.
 *
 * @throws Error when the commit is not in this clone (a shallow CI checkout: fetch the history).
 */
export function earlierVersion(commit: string): string {
  const dir = join(REPO, ".local", `keystone-totp-${commit}`);
  if (existsSync(join(dir, "node_modules", ".bin", "node"))) return dir;
  try {
    execFileSync("git", ["-C", REPO, "cat-file", "-e", `${commit}^{commit}`], { stdio: "ignore" });
  } catch {
    throw new Error(
      `commit ${commit} is not in this clone, so its version cannot be run: fetch the history (git fetch --unshallow)`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  execFileSync("bash", ["-c", `git -C "${REPO}" archive ${commit} | tar -x -C "${dir}"`], { stdio: "ignore" });
  execFileSync("npm", ["ci", "--no-audit", "--no-fund", "--prefer-offline"], {
    cwd: dir,
    stdio: "ignore",
    timeout: INSTALL_TIMEOUT_MS,
  });
  return dir;
}

/**
 * Runs the `provision` of the version in `dir` (see {@link earlierVersion}) on `stack`, e.g.
 * `["up", "--yes"]`, never throwing; its output is pushed to `output`.
 */
export async function provisionWith(
  dir: string,
  stack: TestStack,
  args: string[],
  output: string[],
): Promise<RunResult> {
  const r = await collect(
    "node",
    [join(dir, "scripts/provision.ts"), ...args, "--stack", stack.name, "--config-file", stack.configFile],
    { cwd: dir, env: stack.environment({ PATH: `${join(dir, "node_modules/.bin")}:${stack.environment().PATH}` }) },
  );
  output.push(r.stdout, r.stderr);
  return r;
}
