/**
 * The bench's command line: its options, their defaults and the help text (`--help`).
 */
import os from "node:os";
import { resolve } from "node:path";
import { isPostgresUrl } from "../../operator/backend/bucket.ts";
import { DEFAULT_CORES, type Layout } from "./layout.ts";
import type { Cores } from "./split.ts";
import { DOMAIN } from "./users.ts";

/** User counts measured unless --n says otherwise. */
const DEFAULT_NS = [100, 1000];
/** The largest N, and the largest floor sample: users the local Keystone holds comfortably. */
const MAX_USERS = 20_000;
/** `--parallel` given to every engine run unless told: Pulumi's default on 2 cores (4 x GOMAXPROCS). */
const DEFAULT_PARALLEL = 8;
/** The largest --parallel and --diagnose-parallel value. */
const MAX_PARALLEL = 256;
/** Users in the openstack CLI loop's sample unless --cli-sample says otherwise. */
const DEFAULT_CLI_SAMPLE = 20;
/** The most stacks (--shards), and the most run at once (--shard-concurrency). */
const MAX_SHARDS = 64;
/** Stacks run at once with --shards unless --shard-concurrency says otherwise (as `npm run shards`). */
const DEFAULT_SHARD_CONCURRENCY = 2;
/** Exit code of a bad command line (EX_USAGE). */
const EX_USAGE = 64;

export const HELP = `usage: npm run bench -- [options]

Measures keystone-totp against the local Keystone (OS_* variables, or
.local/keystone/default/openrc) and a local SMTP server, and writes bench/results.json,
bench/time-per-user.svg and a table. Creates users bench-<N>-<i> in the domain ${DOMAIN}
and deletes them at the end (and at the start, after a crashed run).

options:
  --n LIST          user counts, comma-separated (default ${DEFAULT_NS.join(",")}; e.g. 100,1000,5000)
  --floor-sample K  run the floor on the first K users only and scale its time to N
                    (default: all N; the sample runs with all N users in Keystone, so its cost
                    per enrollment is that of a Keystone holding N users; at N = 10,000 the
                    full floor and its clean-up take over half an hour)
  --skip-cli-loop   do not time the openstack CLI loop (cli_loop_* become null)
  --cli-sample K    users in the CLI sample (default ${DEFAULT_CLI_SAMPLE})
  --diagnose        also time an up with PULUMI_SKIP_CHECKPOINTS=true on a second stack
                    (how much of the time is the file backend's per-step checkpoint)
  --diagnose-parallel LIST
                    also time an up with each of these --parallel values, each on a fresh stack
  --users LIST      the same as --n
  --parallel P      pass --parallel P to every up and preview (default ${DEFAULT_PARALLEL}, Pulumi's
                    default on 2 cores; set explicitly because pinning the engine to one core
                    would halve Pulumi's default, 4 x GOMAXPROCS)
  --shards K        run up, no-op up and preview through scripts/shards.ts on K stacks
                    (figures are sums over the stacks); results are kept per N, K and layout
  --stacks K        the same as --shards
  --split           the split layout: Keystone (uWSGI) and its PostgreSQL backends pinned to
                    one core with the bench's SMTP sink and counting proxy (they stand for the
                    far side of the network), everything of ours (program, CLI/engine,
                    providers, the floor's client, the CLI loop) to the other (taskset)
  --layout L        shared (default: everything on every core, as before), split, or both
                    (each N measured in both layouts, one after the other)
  --cores K,O       cores of the split layout: Keystone's, ours (default ${DEFAULT_CORES.keystone},${DEFAULT_CORES.ours})
  --cpu-prof DIR    write V8 CPU profiles of the program and the provider processes of every
                    measured run into DIR (node --cpu-prof; summarise with
                    node bench/profile.ts DIR); the figures then include the
                    profiler's overhead
  --shard-concurrency C
                    stacks run at once with --shards (default ${DEFAULT_SHARD_CONCURRENCY})
  --state-backend URL
                    the stacks' state backend: a postgres://USER:PW@HOST:PORT/DB URL
                    (docs/shared-backend.md); default a file backend of each measurement's own
  --keep            keep the users, credentials, stacks and temp files
  --report          measure nothing: redraw the chart and print the table from bench/results.json
  --help            this text
`;

/** What one `npm run bench` measures, and how. */
export interface Options {
  ns: number[];
  /** Users the floor runs on when N is larger (scaled to N); undefined: all N. */
  floorSample: number | undefined;
  skipCliLoop: boolean;
  cliSample: number;
  diagnose: boolean;
  diagnoseParallel: number[];
  parallel: number;
  shards: number;
  layouts: Layout[];
  cores: Cores;
  cpuProf: string | undefined;
  shardConcurrency: number;
  /** PULUMI_BACKEND_URL of the measured stacks; undefined: a file backend per measurement. */
  stateBackend: string | undefined;
  keep: boolean;
  report: boolean;
}

/** Prints `msg` and the help on stderr and exits (a bad command line). */
function usage(msg: string): never {
  process.stderr.write(`bench: ${msg}\n\n${HELP}`);
  process.exit(EX_USAGE);
}

function whole(a: string, v: string, max: number): number {
  const n = Number(v.trim());
  if (!Number.isInteger(n) || n < 1 || n > max) usage(`${a} takes whole numbers from 1 to ${max}, not '${v}'`);
  return n;
}

function userCounts(v: string): number[] {
  const ns = v.split(",").map((s) => Number(s.trim()));
  if (ns.length === 0 || ns.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_USERS)) {
    usage(`--n takes whole numbers from 1 to ${MAX_USERS}, comma-separated`);
  }
  return ns;
}

function layouts(v: string): Layout[] {
  if (v === "both") return ["shared", "split"];
  if (v === "shared" || v === "split") return [v];
  usage(`--layout takes shared, split or both, not '${v}'`);
}

function cores(v: string): Cores {
  const [k, u, ...rest] = v.split(",").map((c) => Number(c.trim()));
  const max = os.cpus().length - 1;
  const onMachine = (c: number | undefined): c is number =>
    Number.isInteger(c) && (c as number) >= 0 && (c as number) <= max;
  if (rest.length > 0 || !onMachine(k) || !onMachine(u) || k === u) {
    usage(`--cores takes two different cores from 0 to ${max}: KEYSTONE,OURS`);
  }
  return { keystone: k, ours: u };
}

/** The options of a command line (the arguments after `npm run bench --`); exits on a bad one. */
export function parseArgs(argv: string[]): Options {
  const o: Options = {
    ns: DEFAULT_NS,
    floorSample: undefined,
    skipCliLoop: false,
    cliSample: DEFAULT_CLI_SAMPLE,
    diagnose: false,
    diagnoseParallel: [],
    parallel: DEFAULT_PARALLEL,
    shards: 1,
    layouts: ["shared"],
    cores: DEFAULT_CORES,
    cpuProf: undefined,
    shardConcurrency: DEFAULT_SHARD_CONCURRENCY,
    stateBackend: undefined,
    keep: false,
    report: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    if (a === "--help" || a === "-h") {
      process.stdout.write(HELP);
      process.exit(0);
    } else if (a === "--n" || a === "--users") o.ns = userCounts(value());
    else if (a === "--floor-sample") o.floorSample = whole(a, value(), MAX_USERS);
    else if (a === "--skip-cli-loop") o.skipCliLoop = true;
    else if (a === "--cli-sample") {
      o.cliSample = Number(value());
      if (!Number.isInteger(o.cliSample) || o.cliSample < 1) usage("--cli-sample takes a whole number above 0");
    } else if (a === "--diagnose") o.diagnose = true;
    else if (a === "--diagnose-parallel")
      o.diagnoseParallel = value()
        .split(",")
        .map((v) => whole(a, v, MAX_PARALLEL));
    else if (a === "--parallel") o.parallel = whole(a, value(), MAX_PARALLEL);
    else if (a === "--shards" || a === "--stacks") o.shards = whole(a, value(), MAX_SHARDS);
    else if (a === "--split") o.layouts = ["split"];
    else if (a === "--layout") o.layouts = layouts(value());
    else if (a === "--cores") o.cores = cores(value());
    else if (a === "--cpu-prof") o.cpuProf = resolve(value());
    else if (a === "--shard-concurrency") o.shardConcurrency = whole(a, value(), MAX_SHARDS);
    else if (a === "--state-backend") {
      o.stateBackend = value();
      if (!isPostgresUrl(o.stateBackend)) usage("--state-backend takes a postgres:// URL");
    } else if (a === "--keep") o.keep = true;
    else if (a === "--report") o.report = true;
    else usage(`unknown option '${a}'`);
  }
  return o;
}
