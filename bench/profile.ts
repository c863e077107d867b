/**
 * Summarises the V8 CPU profiles that `npm run bench -- --cpu-prof DIR` leaves in DIR: per
 * class of process (program, providers, other), the functions with the most self time and the
 * modules (files, or packages under node_modules) with the most self time.
 *
 * Usage: node bench/profile.ts DIR [--top N]
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

type Table = Map<string, number>;

function add(t: Table, k: string, v: number): void {
  t.set(k, (t.get(k) ?? 0) + v);
}

/** `node_modules/@pulumi/pulumi/runtime/rpc.js` -> `@pulumi/pulumi`; project files as they are. */
function moduleOf(url: string): string {
  if (url === "") return "(native / V8)";
  const u = url.replace(/^file:\/\//, "");
  const nm = u.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = u.slice(nm + "node_modules/".length).split("/");
    return rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? u);
  }
  if (u.startsWith("node:")) return u;
  const at = u.search(/\/(lib|operator|providers|scripts|index\.ts)/);
  return at >= 0 ? u.slice(at + 1) : u;
}

function classOf(p: Profile): string {
  const urls = p.nodes.map((n) => n.callFrame.url);
  if (urls.some((u) => u.includes("dynamic-provider"))) return "provider";
  if (urls.some((u) => u.includes("scripts/provision.ts") || u.includes("scripts/shards.ts"))) return "program";
  return "other";
}

function main(): void {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write("usage: node bench/profile.ts DIR [--top N]\n");
    process.exit(64);
  }
  const topAt = process.argv.indexOf("--top");
  const top = topAt > 0 ? Number(process.argv[topAt + 1]) : 25;
  const byClass = new Map<string, { fns: Table; mods: Table; totalMs: number; files: number }>();
  for (const f of readdirSync(dir).filter((x) => x.endsWith(".cpuprofile"))) {
    const p = JSON.parse(readFileSync(join(dir, f), "utf8")) as Profile;
    const cls = classOf(p);
    const c = byClass.get(cls) ?? { fns: new Map(), mods: new Map(), totalMs: 0, files: 0 };
    byClass.set(cls, c);
    c.files++;
    const node = new Map(p.nodes.map((n) => [n.id, n]));
    for (let i = 0; i < p.samples.length; i++) {
      const n = node.get(p.samples[i] as number);
      const ms = (p.timeDeltas[i] ?? 0) / 1000;
      if (!n || n.callFrame.functionName === "(idle)") continue;
      c.totalMs += ms;
      const cf = n.callFrame;
      add(c.fns, `${cf.functionName || "(anonymous)"} ${moduleOf(cf.url)}:${cf.lineNumber + 1}`, ms);
      add(c.mods, moduleOf(cf.url), ms);
    }
  }
  for (const [cls, c] of byClass) {
    process.stdout.write(`\n== ${cls}: ${c.files} profile(s), ${(c.totalMs / 1000).toFixed(2)} s sampled (not idle)\n`);
    const show = (t: Table, title: string) => {
      process.stdout.write(`-- ${title}\n`);
      for (const [k, v] of [...t].sort((a, b) => b[1] - a[1]).slice(0, top)) {
        process.stdout.write(
          `${v.toFixed(0).padStart(8)} ms ${((100 * v) / c.totalMs).toFixed(1).padStart(5)} %  ${k}\n`,
        );
      }
    };
    show(c.mods, "self time by module");
    show(c.fns, "self time by function");
  }
}

main();
