/**
 * Fails on an import that runs back up the layers (part of `npm run lint`). The layers, from
 * the top: the entry points (scripts/, and index.ts, the program as plain `pulumi up` runs it;
 * and bench/, the benchmark, a workspace of its own) -> operator (commands, doctor, reports,
 * fleet planning, and the program body in operator/program/) -> providers -> lib. A file may
 * import its own layer and those below it; the two entry layers, scripts/ and bench/, do not
 * import each other (the bench runs scripts/provision.ts and shards.ts as processes); nothing
 * but test/ imports test/ (tests may import anything, bench/ included). examples/ are other
 * people's programs: they may import the package (providers/) and lib.
 *
 * The back arrows that exist today are listed in KNOWN with why; a new one fails, and one that
 * is gone must be taken off the list (so the list only shrinks).
 *
 * The 0.1 upgrade path (providers/legacy/: the TotpDelivery handlers, which only 0.1 states
 * load, through the runtime) is quarantined: nothing outside it imports it, except the runtime's
 * contract (`import type`: providers/runtime/contract.ts checks the handlers against the shim),
 * the unit tests under test/unit/providers/ and the upgrade e2e tests (test/e2e/upgrade*.test.ts).
 *
 * Usage: node scripts/check-imports.ts
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Rank of each layer: a file may import ranks up to its own. */
const RANK: Readonly<Record<string, number>> = { lib: 0, providers: 1, operator: 2, scripts: 3, bench: 3 };

/** The quarantined folder: see the header. */
const LEGACY = "providers/legacy/";

/** Today's back arrows, `from -> to` (paths from the repo root), with why they are still here. */
const KNOWN: Readonly<Record<string, string>> = {};

function layerOf(path: string): string | undefined {
  if (path === "index.ts") return "scripts";
  const top = path.split("/")[0] ?? "";
  if (top === "test" || top === "examples") return top;
  return top in RANK ? top : undefined;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (f === "node_modules" || f === "dist" || f.startsWith(".")) return [];
    return statSync(p).isDirectory() ? files(p) : /\.(ts|cjs|js)$/.test(f) ? [p] : [];
  });
}

/** Relative module paths a file imports, exports from, requires or imports dynamically. */
function importsOf(text: string): string[] {
  const out: string[] = [];
  const re = /(?:\bfrom\s+|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)["'](\.{1,2}\/[^"']+)["']/gm;
  for (const m of text.matchAll(re)) if (m[1]) out.push(m[1]);
  return out;
}

/** Whether every import of `spec` in a file is `import type` / `export type` (erased: nothing is loaded). */
function typeOnly(text: string, spec: string): boolean {
  const all = importsOf(text).filter((s) => s === spec).length;
  const re = /^\s*(?:import|export)\s+type\b[^;]*?\bfrom\s+["'](\.{1,2}\/[^"']+)["']/gm;
  return [...text.matchAll(re)].filter((m) => m[1] === spec).length === all;
}

/** Whether `file` may import from the quarantined legacy folder (see the header). */
function mayImportLegacy(file: string, text: string, spec: string): boolean {
  if (file.startsWith(LEGACY)) return true;
  if (file === "providers/runtime/contract.ts") return typeOnly(text, spec);
  return file.startsWith("test/unit/providers/") || /^test\/e2e\/upgrade[^/]*\.test\.ts$/.test(file);
}

/** Whether a file in layer `from` may import a file in layer `to`. */
function allowed(from: string, to: string): boolean {
  if (from === "test") return true;
  if (to === "test") return false;
  if (from === "examples") return to === "providers" || to === "lib" || to === "examples";
  if (to === "examples") return false;
  // scripts/ and bench/ share the top rank but are separate: neither imports the other.
  if (from !== to && RANK[from] === RANK.scripts && RANK[to] === RANK.scripts) return false;
  return (RANK[to] ?? 0) <= (RANK[from] ?? 0);
}

const sources = [
  "index.ts",
  ...["lib", "providers", "operator", "scripts", "bench", "examples", "test"].flatMap((d) =>
    files(join(ROOT, d)).map((f) => relative(ROOT, f)),
  ),
];
const found = new Set<string>();
const bad: string[] = [];
const quarantined: string[] = [];
for (const file of sources) {
  const from = layerOf(file);
  if (!from) continue;
  const text = readFileSync(join(ROOT, file), "utf8");
  for (const spec of importsOf(text)) {
    const target = relative(ROOT, resolve(ROOT, dirname(file), spec));
    if (target.startsWith(LEGACY) && !mayImportLegacy(file, text, spec)) {
      quarantined.push(`${file} -> ${target}`);
    }
    const to = layerOf(target);
    if (!to || allowed(from, to)) continue;
    const arrow = `${file} -> ${target}`;
    found.add(arrow);
    if (!(arrow in KNOWN)) bad.push(`${arrow} (${from} may not import ${to})`);
  }
}
const gone = Object.keys(KNOWN).filter((a) => !found.has(a));
for (const b of bad) console.error(`import runs back up the layers: ${b}`);
for (const g of gone) console.error(`no longer imported: take '${g}' off KNOWN in scripts/check-imports.ts`);
for (const q of quarantined) console.error(`import of the quarantined 0.1 upgrade path: ${q}`);
if (bad.length > 0 || gone.length > 0) {
  console.error("layers: scripts, index.ts | bench -> operator -> providers -> lib; only test/ imports test/");
}
if (quarantined.length > 0) {
  console.error(
    `nothing outside ${LEGACY} imports it, but providers/runtime/contract.ts (import type) and the tests ` +
      "under test/unit/providers/ and test/e2e/upgrade*.test.ts",
  );
}
if (bad.length > 0 || gone.length > 0 || quarantined.length > 0) process.exit(1);
console.log(
  `imports: ${sources.length} files follow scripts, index.ts | bench -> operator -> providers -> lib; only tests and the runtime's contract import ${LEGACY}`,
);
