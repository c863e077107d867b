/**
 * `npm run build` (also run by `npm pack`): the package operators install, in dist/.
 *
 *   tsc -p tsconfig.build.json   the public entry (providers/index.ts) and the handler modules
 *                                the runtime loads, with every module they import, as
 *                                JavaScript and .d.ts (Node will not strip types under
 *                                node_modules)
 *   copied as they are           the runtime (providers/runtime/*.cjs, already JavaScript) and
 *                                the default mail template
 *
 * dist/ is emptied first, so that a module no longer imported does not linger in the package.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const DIST = join(ROOT, "dist");
/** The runtime files a consumer's states name; delivery.cjs serves only 0.1 states of this repository. */
const RUNTIME_FILES = ["provider.cjs", "credential.cjs", "enrollment.cjs", "mfa.cjs"];
/** Files read at run time that tsc does not emit. */
const ASSETS = ["lib/mail/templates"];

rmSync(DIST, { recursive: true, force: true });
execFileSync(join(ROOT, "node_modules", ".bin", "tsc"), ["-p", join(ROOT, "tsconfig.build.json")], {
  stdio: "inherit",
});
mkdirSync(join(DIST, "providers", "runtime"), { recursive: true });
for (const f of RUNTIME_FILES) cpSync(join(ROOT, "providers", "runtime", f), join(DIST, "providers", "runtime", f));
for (const a of ASSETS) cpSync(join(ROOT, a), join(DIST, a), { recursive: true });
console.error(`[build] ${DIST}`);
