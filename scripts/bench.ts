/**
 * `npm run bench`: how long enrolling N users takes, against the local real Keystone and a
 * local SMTP server, compared in the same run with the floor (raw POST /v3/credentials at the
 * best concurrency) and with the operator's alternative (an `openstack credential create`
 * loop). A script, not a test: it asserts nothing, it measures and reports.
 *
 * Per N it creates N users `bench-<N>-<i>` in the domain `keystone-totp-bench`, then:
 *   1. floor     raw POST /v3/credentials for all N users at the best of 1, 4 and 8 in flight
 *                (each level probed on up to 100 users, then the full N at the best), deleted after;
 *   2. ours      `node scripts/provision.ts up` on an empty stack (temp file backend) with the
 *                users CSV, mail over SMTP to a local smtp-server, Keystone behind a counting
 *                proxy; then a no-op `up --expect-no-changes`, then `preview`;
 *                `pulumi stack export` for the state size; /proc polling for memory and CPU;
 *   3. CLI loop  `openstack credential create --type totp` for a sample of users, extrapolated;
 * and deletes the users (Keystone deletes their credentials with them) and the stack.
 *
 * Writes bench/results.json (one object per N, merged with the N not re-measured) and
 * bench/time-per-user.svg, and prints a table.
 *
 * With --shards K the `up`, no-op `up` and `preview` go through `scripts/shards.ts` on K stacks
 * (the documented split of a large fleet); every metric is then the sum over the K stacks,
 * peak memory the largest of any one process.
 *
 * Usage: npm run bench -- [--n 100,1000,5000] [--shards K] [--skip-cli-loop] [--keep] [--help]
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { dump as dumpYaml, load as loadYaml } from "js-yaml";
import { generateSecret } from "../lib/totp/secret.ts";
import { startSmtpServer, type TestSmtpServer } from "../test/support/smtp.ts";
import { renderChart } from "./bench/chart.ts";
import type { FloorRequest, FloorResult } from "./bench/floor.ts";
import { pool, type RawAuth, RawKeystone } from "./bench/keystone.ts";
import { classCpu, cpuDelta, keystoneCpuOf, machineCpu, type Role, type RoleStats, watchTree } from "./bench/procs.ts";
import { type CountingProxy, type RequestCounts, startCountingProxy } from "./bench/proxy.ts";
import { affinityOf, type Cores, cpusIn, Pinning, pin, tasksetAvailable } from "./bench/split.ts";

/** shared: every process on every core (as before); split: Keystone on one core, ours on another. */
type Layout = "shared" | "split";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DOMAIN = "keystone-totp-bench";
const USER_RE = /^bench-\d+-\d+$/;
/** Users in flight tried for the floor (each on the first FLOOR_PROBE users), the best then run on all. */
const FLOOR_LEVELS = [2, 4, 8, 16];
const FLOOR_PROBE = 50;
/** `--parallel` given to every engine run unless told: Pulumi's default on 2 cores (4 x GOMAXPROCS). */
const DEFAULT_PARALLEL = 8;
/** Cores of the split layout unless --cores says otherwise. */
const DEFAULT_CORES: Cores = { keystone: 0, ours: 1 };
const CLI_SAMPLE = 20;
/** Mail rate given to the program: the highest accepted, so that the relay limit is not measured. */
const SEND_RATE = 1000;
const KEYSTONE_STATE = join(process.env.KEYSTONE_TOTP_STATE ?? join(REPO, ".local"), "keystone", "default");

const keystoneCpu = () => keystoneCpuOf(KEYSTONE_STATE);

const HELP = `usage: npm run bench -- [options]

Measures keystone-totp against the local Keystone (OS_* variables, or
.local/keystone/default/openrc) and a local SMTP server, and writes bench/results.json,
bench/time-per-user.svg and a table. Creates users bench-<N>-<i> in the domain ${DOMAIN}
and deletes them at the end (and at the start, after a crashed run).

options:
  --n LIST          user counts, comma-separated (default 100,1000; e.g. 100,1000,5000)
  --floor-sample K  run the floor on the first K users only and scale its time to N
                    (default: all N; the sample runs with all N users in Keystone, so its cost
                    per enrollment is that of a Keystone holding N users; at N = 10,000 the
                    full floor and its clean-up take over half an hour)
  --skip-cli-loop   do not time the openstack CLI loop (cli_loop_* become null)
  --cli-sample K    users in the CLI sample (default ${CLI_SAMPLE})
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
                    node scripts/bench/profile.ts DIR); the figures then include the
                    profiler's overhead
  --shard-concurrency C
                    stacks run at once with --shards (default 2)
  --keep            keep the users, credentials, stacks and temp files
  --report          measure nothing: redraw the chart and print the table from bench/results.json
  --help            this text
`;

interface Options {
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
  keep: boolean;
  report: boolean;
}

function whole(a: string, v: string, max: number): number {
  const n = Number(v.trim());
  if (!Number.isInteger(n) || n < 1 || n > max) usage(`${a} takes whole numbers from 1 to ${max}, not '${v}'`);
  return n;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    ns: [100, 1000],
    floorSample: undefined,
    skipCliLoop: false,
    cliSample: CLI_SAMPLE,
    diagnose: false,
    diagnoseParallel: [],
    parallel: DEFAULT_PARALLEL,
    shards: 1,
    layouts: ["shared"],
    cores: DEFAULT_CORES,
    cpuProf: undefined,
    shardConcurrency: 2,
    keep: false,
    report: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    if (a === "--help" || a === "-h") {
      process.stdout.write(HELP);
      process.exit(0);
    } else if (a === "--n" || a === "--users") {
      o.ns = value()
        .split(",")
        .map((s) => Number(s.trim()));
      if (o.ns.length === 0 || o.ns.some((n) => !Number.isInteger(n) || n < 1 || n > 20_000)) {
        usage("--n takes whole numbers from 1 to 20000, comma-separated");
      }
    } else if (a === "--floor-sample") o.floorSample = whole(a, value(), 20_000);
    else if (a === "--skip-cli-loop") o.skipCliLoop = true;
    else if (a === "--cli-sample") {
      o.cliSample = Number(value());
      if (!Number.isInteger(o.cliSample) || o.cliSample < 1) usage("--cli-sample takes a whole number above 0");
    } else if (a === "--diagnose") o.diagnose = true;
    else if (a === "--diagnose-parallel")
      o.diagnoseParallel = value()
        .split(",")
        .map((v) => whole(a, v, 256));
    else if (a === "--parallel") o.parallel = whole(a, value(), 256);
    else if (a === "--shards" || a === "--stacks") o.shards = whole(a, value(), 64);
    else if (a === "--split") o.layouts = ["split"];
    else if (a === "--layout") {
      const v = value();
      if (v === "both") o.layouts = ["shared", "split"];
      else if (v === "shared" || v === "split") o.layouts = [v];
      else usage(`--layout takes shared, split or both, not '${v}'`);
    } else if (a === "--cores") {
      const [k, u, ...rest] = value()
        .split(",")
        .map((c) => Number(c.trim()));
      const max = os.cpus().length - 1;
      if (
        rest.length > 0 ||
        !Number.isInteger(k) ||
        !Number.isInteger(u) ||
        k === u ||
        [k, u].some((c) => (c as number) < 0 || (c as number) > max)
      ) {
        usage(`--cores takes two different cores from 0 to ${max}: KEYSTONE,OURS`);
      }
      o.cores = { keystone: k as number, ours: u as number };
    } else if (a === "--cpu-prof") o.cpuProf = resolve(value());
    else if (a === "--shard-concurrency") o.shardConcurrency = whole(a, value(), 64);
    else if (a === "--keep") o.keep = true;
    else if (a === "--report") o.report = true;
    else usage(`unknown option '${a}'`);
  }
  return o;
}

function usage(msg: string): never {
  process.stderr.write(`bench: ${msg}\n\n${HELP}`);
  process.exit(64);
}

const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const round = (v: number, d = 2) => Math.round(v * 10 ** d) / 10 ** d;
const since = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

// ------------------------------------------------------------------ environment

/** OS_* from the environment, else from the local Keystone's openrc; loopback only. */
function loadAuth(): { auth: RawAuth; env: Record<string, string> } {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (k.startsWith("OS_") && v !== undefined) env[k] = v;
  if (!env.OS_AUTH_URL) {
    const rc = join(REPO, ".local/keystone/default/openrc");
    if (!existsSync(rc)) {
      throw new Error("no OS_AUTH_URL and no .local/keystone/default/openrc: start the local Keystone first");
    }
    for (const m of readFileSync(rc, "utf8").matchAll(/^export (OS_\w+)=(.*)$/gm)) {
      env[m[1] as string] = (m[2] as string).replace(/^['"]|['"]$/g, "");
    }
  }
  const url = new URL(env.OS_AUTH_URL ?? "");
  if (!["127.0.0.1", "localhost", "[::1]"].includes(url.hostname) || url.protocol !== "http:") {
    throw new Error(`refusing to benchmark a Keystone that is not plain HTTP on loopback (${url.host})`);
  }
  if (!env.OS_PASSWORD || !env.OS_USERNAME) throw new Error("OS_USERNAME and OS_PASSWORD are needed");
  return {
    env,
    auth: {
      authUrl: env.OS_AUTH_URL as string,
      userName: env.OS_USERNAME,
      password: env.OS_PASSWORD,
      userDomainName: env.OS_USER_DOMAIN_NAME ?? "Default",
      projectName: env.OS_PROJECT_NAME ?? "admin",
      projectDomainName: env.OS_PROJECT_DOMAIN_NAME ?? "Default",
    },
  };
}

function sh(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch {
    return null;
  }
}

function machine() {
  return {
    cores: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? null,
    memory_gb: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    load_average_at_start: os.loadavg().map((v) => round(v)),
  };
}

function versions() {
  const pkg = (p: string) => {
    try {
      return (JSON.parse(readFileSync(join(REPO, "node_modules", p, "package.json"), "utf8")) as { version: string })
        .version;
    } catch {
      return null;
    }
  };
  return {
    node: process.version,
    pulumi_cli: sh("pulumi", ["version"]),
    pulumi_sdk: pkg("@pulumi/pulumi"),
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format, not a template
    keystone: sh("dpkg-query", ["-W", "-f", "${Version}", "keystone"]),
    // Keystone's cache changes what each request costs it (about 8x per GET here): see bench/README.md.
    keystone_cache: keystoneCache(),
    openstackclient: sh("openstack", ["--version"])?.replace(/^openstack\s*/, "") ?? null,
    keystone_totp_commit: sh("git", ["-C", REPO, "rev-parse", "--short", "HEAD"]),
    keystone_totp_dirty:
      (sh("git", [
        "-C",
        REPO,
        "status",
        "--porcelain",
        "--",
        "index.ts",
        "lib",
        "operator",
        "providers",
        "scripts/provision.ts",
      ]) ?? "") !== "",
    nodemailer: pkg("nodemailer"),
    smtp_server: pkg("smtp-server"),
  };
}

// ------------------------------------------------------------------ users

async function cleanupUsers(ks: RawKeystone, onlyN?: number): Promise<number> {
  const domainId = await ks.domainId(DOMAIN);
  if (!domainId) return 0;
  const users = (await ks.listUsers(domainId)).filter(
    (u) => USER_RE.test(u.name) && (onlyN === undefined || u.name.startsWith(`bench-${onlyN}-`)),
  );
  await pool(users, 8, (u) => ks.deleteUser(u.id));
  return users.length;
}

function cleanupStaleFiles(): void {
  for (const f of readdirSync(REPO)) {
    if (/^Pulumi\.bench-\d+-[0-9a-f]{6}(-\d+)?\.yaml$/.test(f)) rmSync(join(REPO, f), { force: true });
  }
  // Only the folders this script makes (mkdtemp adds six characters).
  for (const d of readdirSync(os.tmpdir(), { withFileTypes: true })) {
    if (d.isDirectory() && /^kt-bench-\d+-(csv-|cpu-)?[A-Za-z0-9]{6}$/.test(d.name)) {
      rmSync(join(os.tmpdir(), d.name), { recursive: true, force: true });
    }
  }
}

interface BenchUser {
  name: string;
  id: string;
  email: string;
}

// ------------------------------------------------------------------ the floor

/**
 * The cache the local instance was started with (scripts/keystone.sh `--cache`): "memcached" or
 * "none" (also for instances from before the option); null when it has no instance.json.
 */
function keystoneCache(): string | null {
  const i = localInstance();
  if (i === undefined) return null;
  return typeof i.cache === "string" && i.cache !== "" ? i.cache : "none";
}

/** The local instance's instance.json (scripts/keystone.sh), or undefined when there is none. */
function localInstance(): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(join(KEYSTONE_STATE, "instance.json"), "utf8")) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Keystone's [auth] methods as the local instance was started with (they shape the rules). */
function keystoneMethods(): string[] {
  const m = localInstance()?.methods;
  if (typeof m === "string" && m !== "") return m.split(",");
  if (Array.isArray(m)) return m.map(String);
  // not the local instance: Keystone's defaults with TOTP, as the tests run it
  return ["external", "password", "token", "oauth1", "totp", "application_credential"];
}

/** The command line that runs `cmd` on our core in the split layout, as it is in the shared one. */
function onOurCore(layout: LayoutSpec, cmd: string[]): string[] {
  return layout.layout === "split" ? ["taskset", "-c", String(layout.cores.ours), ...cmd] : cmd;
}

/** Runs scripts/bench/floor.ts (on our core in the split layout) over `users`. */
function measureFloor(auth: RawAuth, users: readonly BenchUser[], layout: LayoutSpec): Promise<FloorResult> {
  const request: FloorRequest = {
    auth,
    userIds: users.map((u) => u.id),
    levels: FLOOR_LEVELS,
    probe: FLOOR_PROBE,
    keystoneState: KEYSTONE_STATE,
    methods: keystoneMethods(),
  };
  const [cmd, ...args] = onOurCore(layout, [process.execPath, join(REPO, "scripts/bench/floor.ts")]);
  return new Promise((res, rej) => {
    const c = spawn(cmd as string, args, { cwd: REPO, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    c.stdout.on("data", (b: Buffer) => {
      out += b.toString();
    });
    c.stderr.on("data", (b: Buffer) => {
      err += b.toString();
      for (const line of b.toString().split("\n")) if (line.trim()) log(line.trim());
    });
    c.on("error", rej);
    c.on("close", (code) =>
      code === 0
        ? res(JSON.parse(out) as FloorResult)
        : rej(new Error(`the floor exited ${code}: ${err.slice(-2000)}`)),
    );
    c.stdin.end(JSON.stringify(request));
  });
}

// ------------------------------------------------------------------ ours

/** The layout of one measurement. */
interface LayoutSpec {
  layout: Layout;
  cores: Cores;
  cpuProf: string | undefined;
}

/** CPU seconds of one run by class of process, exact where the exit hook reported. */
interface ClassCpu {
  /** scripts/provision.ts (or shards.ts and the provision.ts it starts). */
  program: number;
  /** The Pulumi CLI processes (engine) and what they start besides the providers (the shims). */
  engine: number;
  /** The dynamic-provider Node.js processes. */
  provider: number;
  /** Everything under the run, from the wrapper shell's `times` (reaped children included). */
  total: number;
  /** Processes whose exit the hook recorded, and those only polled (their last poll counts). */
  exact_processes: number;
  polled_processes: number;
  peak_rss_mb: Record<"program" | "provider" | "engine", number>;
}

interface RunResult {
  code: number;
  wall_s: number;
  output: string;
  roles: Record<Role, RoleStats>;
  cpu: ClassCpu;
  keystone: RequestCounts;
  smtpConnections: number;
  smtpMessages: number;
  keystoneCpuS: number;
  machineBusy: number;
  /** Seconds from start at which 25/50/75/100 % of the resource creations had finished. */
  progress: { first_op_s: number | null; quartiles_s: (number | null)[] };
}

/**
 * The stack(s) one measurement runs on: one stack driven by provision.ts, or with `shards` > 1
 * the stacks NAME-0 .. NAME-(K-1) driven by shards.ts, whose settings are copied from the
 * never-deployed stack NAME (its config file must then be in the project, where shards.ts
 * reads it).
 */
class Stack {
  readonly name: string;
  readonly dir: string;
  readonly configFile: string;
  readonly env: Record<string, string>;
  readonly shards: number;
  readonly shardConcurrency: number;
  readonly layout: LayoutSpec;
  private created = false;

  constructor(
    n: number,
    csv: string,
    smtp: TestSmtpServer,
    proxy: CountingProxy,
    osEnv: Record<string, string>,
    split: { shards: number; concurrency: number } = { shards: 1, concurrency: 1 },
    layout: LayoutSpec = { layout: "shared", cores: DEFAULT_CORES, cpuProf: undefined },
  ) {
    this.layout = layout;
    this.name = `bench-${n}-${randomBytes(3).toString("hex")}`;
    this.shards = split.shards;
    this.shardConcurrency = split.concurrency;
    this.dir = mkdtempSync(join(os.tmpdir(), `kt-bench-${n}-`));
    mkdirSync(join(this.dir, "backend"));
    this.configFile = join(this.dir, `Pulumi.${this.name}.yaml`);
    writeFileSync(
      this.configFile,
      [
        "config:",
        `  keystone-totp:usersCsv: ${JSON.stringify(csv)}`,
        `  keystone-totp:smtpUrl: ${JSON.stringify(smtp.url)}`,
        `  keystone-totp:mailFrom: "keystone-totp bench <noreply@example.com>"`,
        `  keystone-totp:issuer: "keystone-totp bench"`,
        `  keystone-totp:sendRatePerSecond: "${SEND_RATE}"`,
        "",
      ].join("\n"),
    );
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (v !== undefined && !k.startsWith("OS_") && !k.startsWith("PULUMI_CONFIG_PASSPHRASE")) base[k] = v;
    }
    this.env = {
      ...base,
      ...osEnv,
      OS_AUTH_URL: `http://127.0.0.1:${proxy.port}/v3`,
      PULUMI_BACKEND_URL: `file://${join(this.dir, "backend")}`,
      PULUMI_CONFIG_PASSPHRASE: randomBytes(16).toString("hex"),
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
    };
  }

  /** The stacks that hold the users. */
  stacks(): string[] {
    return this.shards > 1 ? Array.from({ length: this.shards }, (_, i) => `${this.name}-${i}`) : [this.name];
  }

  /** With shards: creates the settings stack NAME in the project, with this stack's settings. */
  async init(): Promise<void> {
    if (this.shards <= 1) return;
    const r = await this.pulumi(["stack", "init", "--secrets-provider", "passphrase"]);
    if (r.code !== 0) throw new Error(`pulumi stack init failed: ${r.stderr.slice(-2000)}`);
    const file = join(REPO, `Pulumi.${this.name}.yaml`);
    const doc = (loadYaml(readFileSync(file, "utf8")) ?? {}) as Record<string, unknown>;
    const settings = loadYaml(readFileSync(this.configFile, "utf8")) as { config: Record<string, unknown> };
    writeFileSync(file, dumpYaml({ ...doc, config: settings.config }), { mode: 0o600 });
  }

  pulumi(args: string[], stack = this.name): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((res, rej) => {
      const [cmd, ...rest] = onOurCore(this.layout, ["pulumi", ...args, "--stack", stack, "--non-interactive"]);
      const c = spawn(cmd as string, rest, {
        cwd: REPO,
        env: this.env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      c.stdout.on("data", (b: Buffer) => out.push(b));
      c.stderr.on("data", (b: Buffer) => err.push(b));
      c.on("error", rej);
      c.on("close", (code) =>
        res({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
      );
    });
  }

  /** Runs scripts/provision.ts VERB with this stack's config file (or shards.ts), measuring it. */
  provision(
    verb: string,
    extra: string[],
    ctx: { proxy: CountingProxy; smtp: TestSmtpServer; expectedOps: number; env?: Record<string, string> },
  ): Promise<RunResult> {
    const shardArgs = [
      join(REPO, "scripts/shards.ts"),
      verb,
      ...["--stack-prefix", this.name, "--shards", String(this.shards)],
      ...["--concurrency", String(this.shardConcurrency)],
      // Settings are copied once, when the stacks are made, as an operator would.
      ...(this.created ? [] : ["--config-from", this.name]),
    ];
    const args =
      this.shards > 1
        ? shardArgs
        : [join(REPO, "scripts/provision.ts"), verb, "--stack", this.name, "--config-file", this.configFile];
    this.created = true;
    ctx.proxy.reset();
    const smtp0 = { c: ctx.smtp.connections, m: ctx.smtp.received.length };
    const ks0 = keystoneCpu();
    const m0 = machineCpu();
    const logFile = join(REPO, ".local", "logs", `bench-${this.name}.log`);
    mkdirSync(dirname(logFile), { recursive: true, mode: 0o700 });
    const acct = mkdtempSync(join(os.tmpdir(), `kt-bench-${this.name.split("-")[1]}-cpu-`));
    const cpuLog = join(acct, "exits.jsonl");
    const timesFile = join(acct, "times");
    const nodeOptions = [
      process.env.NODE_OPTIONS ?? "",
      `--require=${join(REPO, "scripts/bench/exit-cpu.cjs")}`,
      ...(this.layout.cpuProf ? ["--cpu-prof", `--cpu-prof-dir=${this.layout.cpuProf}`] : []),
    ]
      .filter((x) => x !== "")
      .join(" ");
    // The shell's `times` after the run: the CPU of everything under it, reaped children included.
    const wrapper = 'rc=0; "$@" || rc=$?; times > "$KT_BENCH_TIMES"; exit $rc';
    return new Promise((res, rej) => {
      const t0 = process.hrtime.bigint();
      const child = spawn(
        "bash",
        ["-c", wrapper, "bench-run", ...onOurCore(this.layout, [process.execPath, ...args, ...extra])],
        {
          cwd: REPO,
          env: {
            ...this.env,
            ...ctx.env,
            NODE_OPTIONS: nodeOptions,
            KT_BENCH_CPU_LOG: cpuLog,
            KT_BENCH_TIMES: timesFile,
          },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      const watch = watchTree(child.pid ?? -1);
      let output = "";
      let pending = "";
      let firstOp: number | null = null;
      const doneAt: number[] = [];
      const onData = (b: Buffer) => {
        const text = b.toString("utf8");
        output += text;
        pending += text;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) {
          if (firstOp === null && /\b(creating|updating|deleting)\b/.test(line)) firstOp = since(t0);
          if (/\bcreated\b/.test(line) && !/Resources:/.test(line)) doneAt.push(since(t0));
        }
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      child.on("error", rej);
      child.on("close", (code) => {
        const wall = since(t0);
        const roles = watch.stop();
        const cpu = classCpu(watch.perProcess(), cpuLog, timesFile);
        rmSync(acct, { recursive: true, force: true });
        const ks1 = keystoneCpu();
        const m1 = machineCpu();
        appendFileSync(
          logFile,
          `$ provision ${verb} ${extra.join(" ")}\n${output}\n[exit ${code}, ${wall.toFixed(2)} s]\n\n`,
          {
            mode: 0o600,
          },
        );
        const q = [0.25, 0.5, 0.75, 1].map((f) => {
          const k = Math.ceil(f * ctx.expectedOps) - 1;
          return ctx.expectedOps > 0 && k < doneAt.length ? round(doneAt[k] as number) : null;
        });
        res({
          code: code ?? -1,
          wall_s: round(wall),
          output,
          roles,
          cpu,
          keystone: ctx.proxy.counts(),
          smtpConnections: ctx.smtp.connections - smtp0.c,
          smtpMessages: ctx.smtp.received.length - smtp0.m,
          keystoneCpuS: cpuDelta(ks0, ks1),
          machineBusy: round((m1.busyS - m0.busyS) / (m1.totalS - m0.totalS || 1), 2),
          progress: { first_op_s: firstOp === null ? null : round(firstOp), quartiles_s: q },
        });
      });
    });
  }

  /**
   * `pulumi stack export` of every stack, summed: the export's size (as the issue counts it),
   * the checkpoint files' size on disk (what the engine rewrites after every step), and a
   * breakdown of the compact JSON by resource type and by field, to show what to cut.
   */
  async exportState(): Promise<StateSize> {
    const size: StateSize = {
      bytes: 0,
      compactBytes: 0,
      checkpointBytes: 0,
      providerBytes: 0,
      resources: 0,
      byType: {},
      byField: {},
    };
    const add = (m: Record<string, number>, k: string, v: number) => {
      m[k] = (m[k] ?? 0) + v;
    };
    for (const stack of this.stacks()) {
      const r = await this.pulumi(["stack", "export"], stack);
      if (r.code !== 0) throw new Error(`pulumi stack export failed: ${r.stderr.slice(-2000)}`);
      const dep = JSON.parse(r.stdout) as { deployment: { resources?: Record<string, unknown>[] } };
      size.bytes += Buffer.byteLength(r.stdout);
      size.compactBytes += Buffer.byteLength(JSON.stringify(dep));
      for (const res of dep.deployment.resources ?? []) {
        size.resources++;
        const type = String(res.type).split(":").pop() ?? String(res.type);
        add(size.byType, type, Buffer.byteLength(JSON.stringify(res)));
        for (const [field, v] of Object.entries(res)) {
          if ((field === "inputs" || field === "outputs") && v && typeof v === "object") {
            for (const [k, x] of Object.entries(v)) {
              const bytes = Buffer.byteLength(JSON.stringify(x)) + k.length + 4;
              add(size.byField, `${type}.${field}.${k}`, bytes);
              if (k === "__provider") size.providerBytes += bytes;
            }
          } else add(size.byField, `${type}.${field}`, Buffer.byteLength(JSON.stringify(v)) + field.length + 4);
        }
      }
    }
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (this.stacks().some((s) => e.name === `${s}.json`)) size.checkpointBytes += statSync(p).size;
      }
    };
    walk(join(this.dir, "backend"));
    return size;
  }

  async remove(): Promise<void> {
    for (const stack of [...(this.shards > 1 ? this.stacks() : []), this.name]) {
      await this.pulumi(["stack", "rm", "--yes", "--force"], stack);
      rmSync(join(REPO, `Pulumi.${stack}.yaml`), { force: true });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** State size summed over a measurement's stacks, in bytes. */
interface StateSize {
  bytes: number;
  compactBytes: number;
  checkpointBytes: number;
  providerBytes: number;
  resources: number;
  byType: Record<string, number>;
  byField: Record<string, number>;
}

function failIf(r: RunResult, what: string): void {
  if (r.code !== 0) {
    throw new Error(`${what} exited ${r.code}; output (last 3000 chars):\n${r.output.slice(-3000)}`);
  }
}

// ------------------------------------------------------------------ the CLI loop

async function measureCliLoop(
  ks: RawKeystone,
  users: readonly BenchUser[],
  sample: number,
  osEnv: Record<string, string>,
  layout: LayoutSpec,
): Promise<{ s_per_user: number | null; sample: number; note: string | null }> {
  if (sh("openstack", ["--version"]) === null) {
    return { s_per_user: null, sample: 0, note: "openstack CLI not found: apt-get install python3-openstackclient" };
  }
  const env = { ...process.env, ...osEnv };
  const picked = users.slice(0, Math.min(sample, users.length));
  const ids: string[] = [];
  const t0 = process.hrtime.bigint();
  for (const u of picked) {
    const id = await new Promise<string>((res, rej) => {
      const [cmd, ...args] = onOurCore(layout, [
        "openstack",
        ...["credential", "create", "--type", "totp", u.id, generateSecret(), "-f", "value", "-c", "id"],
      ]);
      const c = spawn(cmd as string, args, {
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      c.stdout.on("data", (b: Buffer) => {
        out += b.toString();
      });
      c.stderr.on("data", (b: Buffer) => {
        err += b.toString();
      });
      c.on("error", rej);
      c.on("close", (code) =>
        code === 0 ? res(out.trim()) : rej(new Error(`openstack credential create exited ${code}: ${err.slice(-500)}`)),
      );
    });
    ids.push(id);
  }
  const s = since(t0);
  await pool(ids, 8, (id) => ks.deleteCredential(id));
  return { s_per_user: round(s / picked.length, 3), sample: picked.length, note: null };
}

// ------------------------------------------------------------------ one N

type Result = Record<string, unknown> & { n: number };

async function benchN(
  n: number,
  o: Options,
  ks: RawKeystone,
  osEnv: Record<string, string>,
  smtp: TestSmtpServer,
  proxy: CountingProxy,
  meta: { machine: ReturnType<typeof machine>; versions: ReturnType<typeof versions> },
  auth: RawAuth,
  layout: LayoutSpec,
): Promise<Result> {
  log(`N=${n} (${layout.layout} layout): creating ${n} users in domain ${DOMAIN}`);
  const domainId = await ks.ensureDomain(DOMAIN);
  await cleanupUsers(ks, n);
  let t0 = process.hrtime.bigint();
  const users: BenchUser[] = await pool(
    Array.from({ length: n }, (_, i) => i + 1),
    8,
    async (i) => {
      const name = `bench-${n}-${i}`;
      const email = `${name}@example.com`;
      return { name, email, id: await ks.createUser(name, domainId, email) };
    },
  );
  const setupS = since(t0);
  log(`N=${n}: users created in ${setupS.toFixed(1)} s`);

  const stacks: Stack[] = [];
  try {
    // Pinned only while measuring: creating and deleting the users (untimed) is Keystone's work
    // alone, and on one core it took twice as long (at N = 10,000, about 40 minutes more).
    return await inLayout(layout, async () => {
      // A sampled floor is scaled to N. It runs with all N users in Keystone, whose cost per
      // enrollment grows a little with them (probes of 50: 12.9-16.3 s at 1,000 users, 16.4-18.2 s
      // at 10,000), so the sample pays about what a full pass would (a full pass also grows the
      // credential table to N credentials, which the sample does not: not measured).
      const floorUsers = Math.min(n, o.floorSample ?? n);
      const measured = await measureFloor(auth, users.slice(0, floorUsers), layout);
      const floor = { ...measured, floor_s: round((measured.floor_s * n) / floorUsers) };
      log(
        `N=${n}: floor ${floor.floor_s} s at ${floor.floor_concurrency} in flight` +
          (floorUsers < n ? ` (${measured.floor_s} s measured on ${floorUsers} users, scaled)` : ""),
      );

      const dir = mkdtempSync(join(os.tmpdir(), `kt-bench-${n}-csv-`));
      const csv = join(dir, "users.csv");
      writeFileSync(csv, `username,email,domain\n${users.map((u) => `${u.name},${u.email},${DOMAIN}`).join("\n")}\n`);
      const split = { shards: o.shards, concurrency: o.shardConcurrency };
      const newStack = async () => {
        const s = new Stack(n, csv, smtp, proxy, osEnv, split, layout);
        stacks.push(s);
        await s.init();
        return s;
      };
      const stack = await newStack();
      const ctx = { proxy, smtp, expectedOps: 2 * n };
      const par = ["--parallel", String(o.parallel)];
      const loadStart = os.loadavg().map((v) => round(v));

      log(`N=${n}: up (stack ${stack.name}${o.shards > 1 ? `, ${o.shards} shards` : ""})`);
      const up = await stack.provision("up", ["--yes", ...par], ctx);
      failIf(up, "up");
      log(`N=${n}: up ${up.wall_s} s; noop up`);
      // A run of 10,000 users takes over an hour before its row is written: what it has
      // measured so far is kept, so that a run stopped later still leaves its figures.
      const afterUp = {
        n,
        layout: layout.layout,
        shards: o.shards,
        parallel: o.parallel,
        floor,
        floor_measured_users: floorUsers,
        floor_measured_s: measured.floor_s,
        up_s: up.wall_s,
        cpu_ms_per_user: cpuPerUser(up, n),
        up_cpu: up.cpu,
        up_keystone: up.keystone,
      };
      writePartial(afterUp);
      const noop = await stack.provision("up", ["--yes", "--expect-no-changes", ...par], { ...ctx, expectedOps: 0 });
      failIf(noop, "no-op up");
      writePartial({
        ...afterUp,
        noop_up_s: noop.wall_s,
        noop_cpu_ms_per_user: cpuPerUser(noop, n),
        noop_cpu: noop.cpu,
        noop_keystone_writes: noop.keystone.writes,
      });
      log(`N=${n}: no-op up ${noop.wall_s} s; preview`);
      const preview = await stack.provision("preview", [...par], { ...ctx, expectedOps: 0 });
      failIf(preview, "preview");
      log(`N=${n}: preview ${preview.wall_s} s; stack export`);
      const state = await stack.exportState();
      const loadAfterMain = os.loadavg().map((v) => round(v));

      let diag: RunResult | undefined;
      if (o.diagnose) {
        const second = await newStack();
        log(`N=${n}: diagnose: up with PULUMI_SKIP_CHECKPOINTS=true (stack ${second.name})`);
        diag = await second.provision("up", ["--yes", ...par], { ...ctx, env: { PULUMI_SKIP_CHECKPOINTS: "true" } });
        failIf(diag, "up (PULUMI_SKIP_CHECKPOINTS)");
        log(`N=${n}: up with PULUMI_SKIP_CHECKPOINTS=true: ${diag.wall_s} s`);
      }
      const byParallel: Record<string, { up_s: number; engine_cpu_s: number; load_average_1m: number }> = {};
      for (const p of o.diagnoseParallel) {
        const other = await newStack();
        const load = round(os.loadavg()[0] ?? 0);
        log(`N=${n}: diagnose: up with --parallel ${p} (stack ${other.name})`);
        const r = await other.provision("up", ["--yes", "--parallel", String(p)], ctx);
        failIf(r, `up --parallel ${p}`);
        byParallel[String(p)] = { up_s: r.wall_s, engine_cpu_s: r.roles.engine.cpuS, load_average_1m: load };
        log(`N=${n}: up with --parallel ${p}: ${r.wall_s} s`);
      }

      let cli: Awaited<ReturnType<typeof measureCliLoop>> = { s_per_user: null, sample: 0, note: "skipped" };
      if (!o.skipCliLoop) {
        log(`N=${n}: openstack CLI loop on ${Math.min(o.cliSample, n)} users`);
        cli = await measureCliLoop(ks, users, o.cliSample, osEnv, layout);
      }

      const creds = up.keystone.byRoute["POST /v3/credentials"] ?? 0;
      const cliLoopS = cli.s_per_user === null ? null : round(cli.s_per_user * n, 1);
      const result: Result = {
        n,
        date: new Date().toISOString(),
        layout: layout.layout,
        cores: layout.layout === "split" ? layout.cores : null,
        floor_s: floor.floor_s,
        floor_concurrency: floor.floor_concurrency,
        floor_enrollments_per_s: floor.floor_enrollments_per_s,
        floor_probe_enrollments_per_s: floor.floor_probe_enrollments_per_s,
        floor_measured_users: floorUsers,
        floor_measured_s: measured.floor_s,
        floor_requests: "PATCH /v3/users/{id} (MFA rules) + POST /v3/credentials per user",
        floor_keystone_cpu_ms_per_user: round((floor.floor_keystone_cpu_s * 1000) / floorUsers, 1),
        floor_client_cpu_ms_per_user: round((floor.floor_client_cpu_s * 1000) / floorUsers, 1),
        up_s: up.wall_s,
        noop_up_s: noop.wall_s,
        preview_s: preview.wall_s,
        up_over_floor: round(up.wall_s / floor.floor_s),
        cli_loop_s: cliLoopS,
        cli_loop_s_per_user: cli.s_per_user,
        cli_loop_sample: cli.sample,
        cli_loop_note: cli.note,
        cli_loop_over_up: cliLoopS === null ? null : round(cliLoopS / up.wall_s, 1),
        s_per_user: {
          floor: round(floor.floor_s / n, 4),
          up: round(up.wall_s / n, 4),
          noop_up: round(noop.wall_s / n, 4),
          preview: round(preview.wall_s / n, 4),
          cli_loop: cli.s_per_user,
        },
        keystone_credentials_created: creds,
        keystone_requests: up.keystone.total,
        keystone_requests_per_credential: creds > 0 ? round(up.keystone.total / creds, 3) : null,
        // Without the preflight's requests (the doctor's, which include a refused POST probe).
        keystone_requests_per_credential_program: round((up.keystone.byAgent["keystone-totp"]?.requests ?? 0) / n, 3),
        keystone_requests_by_route: up.keystone.byRoute,
        keystone_tokens_issued: up.keystone.tokens,
        keystone_requests_by_agent: up.keystone.byAgent,
        noop_keystone_requests_by_agent: noop.keystone.byAgent,
        noop_keystone_requests: noop.keystone.total,
        noop_keystone_writes: noop.keystone.writes,
        preview_keystone_requests: preview.keystone.total,
        preview_keystone_writes: preview.keystone.writes,
        preview_smtp_messages: preview.smtpMessages,
        smtp_messages: up.smtpMessages,
        smtp_connections: up.smtpConnections,
        noop_smtp_connections: noop.smtpConnections + preview.smtpConnections,
        state_bytes: state.bytes,
        state_bytes_per_user: Math.round(state.bytes / n),
        state_provider_bytes_per_user: Math.round(state.providerBytes / n),
        state_resources: state.resources,
        peak_rss_program_mb: Math.max(up.cpu.peak_rss_mb.program, noop.cpu.peak_rss_mb.program),
        peak_rss_provider_mb: Math.max(up.cpu.peak_rss_mb.provider, noop.cpu.peak_rss_mb.provider),
        peak_rss_engine_mb: Math.max(up.cpu.peak_rss_mb.engine, noop.cpu.peak_rss_mb.engine),
        provider_processes: up.roles.provider.processes,
        up_cpu_s: {
          program: up.cpu.program,
          engine: up.cpu.engine,
          provider: up.cpu.provider,
          keystone_and_postgres: up.keystoneCpuS,
        },
        noop_up_cpu_s: {
          program: noop.cpu.program,
          engine: noop.cpu.engine,
          provider: noop.cpu.provider,
          keystone_and_postgres: noop.keystoneCpuS,
        },
        up_machine_busy_fraction: up.machineBusy,
        up_progress: up.progress,
        up_skip_checkpoints_s: diag ? diag.wall_s : null,
        up_skip_checkpoints_over_floor: diag ? round(diag.wall_s / floor.floor_s) : null,
        up_by_parallel: byParallel,
        shards: o.shards,
        shard_concurrency: o.shards > 1 ? o.shardConcurrency : null,
        state_compact_bytes_per_user: Math.round(state.compactBytes / n),
        state_checkpoint_bytes_per_user: Math.round(state.checkpointBytes / n),
        state_bytes_per_user_by_type: Object.fromEntries(
          Object.entries(state.byType).map(([k, v]) => [k, Math.round((v / n) * 10) / 10]),
        ),
        state_bytes_per_user_by_field: Object.fromEntries(
          Object.entries(state.byField)
            .sort(([, a], [, b]) => b - a)
            .map(([k, v]) => [k, Math.round((v / n) * 10) / 10]),
        ),
        load_average_during: { start: loadStart, after_up_noop_preview: loadAfterMain },
        users_setup_s: round(setupS, 1),
        floor_cleanup_s: floor.floor_cleanup_s,
        send_rate_per_second: SEND_RATE,
        parallel: o.parallel,
        // Go sizes GOMAXPROCS from the CPUs the engine may run on.
        engine_gomaxprocs: layout.layout === "split" ? 1 : os.cpus().length,
        cpu_ms_per_user: cpuPerUser(up, n),
        noop_cpu_ms_per_user: cpuPerUser(noop, n),
        preview_cpu_ms_per_user: cpuPerUser(preview, n),
        cpu_accounting: { up: up.cpu, noop_up: noop.cpu, preview: preview.cpu },
        cpu_profiled: layout.cpuProf !== undefined,
        machine: meta.machine,
        versions: meta.versions,
      };
      rmSync(dir, { recursive: true, force: true });
      return result;
    });
  } finally {
    if (!o.keep) {
      // A failed clean-up must not lose the row just measured: the next run removes what is left.
      try {
        for (const s of stacks) await s.remove();
        t0 = process.hrtime.bigint();
        const gone = await cleanupUsers(ks, n);
        log(`N=${n}: deleted ${gone} users (and their credentials) in ${since(t0).toFixed(1)} s`);
      } catch (e) {
        log(
          `N=${n}: clean-up failed (the next run removes the leftovers): ${e instanceof Error ? e.message : String(e)}`,
        );
      }
    } else {
      log(`N=${n}: kept users and stacks (${stacks.map((s) => `${s.name} in ${s.dir}`).join(", ")})`);
    }
  }
}

// ------------------------------------------------------------------ output

/**
 * CPU ms per user of one run by class, and ours (engine + providers + program) over Keystone's
 * (its uWSGI processes and PostgreSQL backends) in the same run.
 */
/** Where a run keeps what it has measured before its row is complete (overwritten by each run). */
const PARTIAL_FILE = join(process.env.KEYSTONE_TOTP_STATE ?? join(REPO, ".local"), "bench-partial.json");

function writePartial(figures: Record<string, unknown>): void {
  mkdirSync(dirname(PARTIAL_FILE), { recursive: true });
  writeFileSync(PARTIAL_FILE, `${JSON.stringify({ date: new Date().toISOString(), ...figures }, null, 2)}\n`);
  log(`partial figures kept in ${PARTIAL_FILE}`);
}

function cpuPerUser(r: RunResult, n: number) {
  const ms = (s: number) => round((s * 1000) / n, 2);
  const ours = r.cpu.engine + r.cpu.provider + r.cpu.program;
  return {
    engine: ms(r.cpu.engine),
    providers: ms(r.cpu.provider),
    program: ms(r.cpu.program),
    ours: ms(ours),
    keystone_and_postgres: ms(r.keystoneCpuS),
    ours_over_keystone: r.keystoneCpuS > 0 ? round(ours / r.keystoneCpuS) : null,
  };
}

/** Issue 15's targets, for the rows they apply to (null: not this row's). */
function targets(r: Result) {
  const n = r.n;
  const cpu = r.cpu_ms_per_user as ReturnType<typeof cpuPerUser> | undefined;
  const split = layoutOf(r) === "split";
  const peak = Math.max(
    r.peak_rss_program_mb as number,
    r.peak_rss_provider_mb as number,
    r.peak_rss_engine_mb as number,
  );
  return {
    n,
    stacks: shardsOf(r),
    layout: layoutOf(r),
    up_within_1_5x_floor: split && n === 1000 ? (r.up_over_floor as number) <= 1.5 : null,
    cli_loop_20x_slower:
      split && n === 1000 && r.cli_loop_over_up != null ? (r.cli_loop_over_up as number) >= 20 : null,
    ours_cpu_at_most_keystones: cpu?.ours_over_keystone != null ? cpu.ours_over_keystone <= 1 : null,
    peak_rss_under_1_gib: peak < 1024,
    noop_up_within_5pct_of_floor: split && n >= 10_000 ? (r.noop_up_s as number) <= 0.05 * (r.floor_s as number) : null,
    noop_zero_writes_by_resources:
      ((r.noop_keystone_requests_by_agent as Record<string, { writes: number }> | undefined)?.["keystone-totp"]
        ?.writes ?? 0) === 0,
    preview_sends_nothing: r.preview_keystone_writes === 0 && r.preview_smtp_messages === 0,
    s_per_user: (r.s_per_user as { up: number }).up,
  };
}

function table(results: readonly Result[]): string {
  const head = [
    "N",
    "layout",
    "floor s (in flight)",
    "up s",
    "up/floor",
    "no-op up s",
    "preview s",
    "Keystone req/user",
    "no-op writes",
    "SMTP conns/msgs",
    "state B/user",
    "CLI s/user",
    "CLI loop/up",
    "peak RSS MB program/provider/engine",
  ];
  const rows = results.map((r) => [
    shardsOf(r) > 1 ? `${r.n} (${shardsOf(r)} stacks)` : String(r.n),
    layoutOf(r),
    `${r.floor_s} (${r.floor_concurrency})`,
    String(r.up_s),
    `${r.up_over_floor}x`,
    String(r.noop_up_s),
    String(r.preview_s),
    String(r.keystone_requests_per_credential),
    String(r.noop_keystone_writes),
    `${r.smtp_connections}/${r.smtp_messages}`,
    String(r.state_bytes_per_user),
    r.cli_loop_s_per_user == null ? "n/a" : String(r.cli_loop_s_per_user),
    r.cli_loop_over_up == null ? "n/a" : `${r.cli_loop_over_up}x`,
    `${r.peak_rss_program_mb}/${r.peak_rss_provider_mb}/${r.peak_rss_engine_mb}`,
  ]);
  const md = (h: string[], rs: string[][]) =>
    [`| ${h.join(" | ")} |`, `|${h.map(() => "---").join("|")}|`, ...rs.map((x) => `| ${x.join(" | ")} |`)].join("\n");
  const cpuHead = [
    "N",
    "layout",
    "run",
    "engine",
    "providers",
    "program",
    "ours",
    "Keystone + PostgreSQL",
    "ours / Keystone",
    "floor: Keystone / client",
  ];
  const cpuRows: string[][] = [];
  for (const r of results) {
    for (const [run, key] of [
      ["up", "cpu_ms_per_user"],
      ["no-op up", "noop_cpu_ms_per_user"],
      ["preview", "preview_cpu_ms_per_user"],
    ] as const) {
      const c = r[key] as ReturnType<typeof cpuPerUser> | undefined;
      if (!c) continue;
      cpuRows.push([
        shardsOf(r) > 1 ? `${r.n} (${shardsOf(r)} stacks)` : String(r.n),
        layoutOf(r),
        run,
        String(c.engine),
        String(c.providers),
        String(c.program),
        String(c.ours),
        String(c.keystone_and_postgres),
        c.ours_over_keystone === null ? "n/a" : `${c.ours_over_keystone}x`,
        run === "up" ? `${r.floor_keystone_cpu_ms_per_user ?? "n/a"} / ${r.floor_client_cpu_ms_per_user ?? "n/a"}` : "",
      ]);
    }
  }
  return `${md(head, rows)}\n\nCPU ms per user (from /proc; ours = engine + providers + program)\n\n${md(cpuHead, cpuRows)}`;
}

/** The layout a result was measured in (results from before --split: shared). */
function layoutOf(r: Result): Layout {
  return r.layout === "split" ? "split" : "shared";
}

/** Stacks a result was measured on (results from before --shards existed: 1). */
function shardsOf(r: Result): number {
  return typeof r.shards === "number" ? r.shards : 1;
}

function writeOutputs(fresh: readonly Result[]): Result[] {
  const file = join(REPO, "bench", "results.json");
  mkdirSync(dirname(file), { recursive: true });
  let old: Result[] = [];
  try {
    old = JSON.parse(readFileSync(file, "utf8")) as Result[];
  } catch {
    old = [];
  }
  // One result per N, number of stacks and layout: a split run does not replace the shared figures.
  const same = (a: Result, b: Result) => a.n === b.n && shardsOf(a) === shardsOf(b) && layoutOf(a) === layoutOf(b);
  const merged = [...old.filter((r) => !fresh.some((f) => same(f, r))), ...fresh].sort(
    (a, b) => a.n - b.n || shardsOf(a) - shardsOf(b) || layoutOf(a).localeCompare(layoutOf(b)),
  );
  writeFileSync(file, `${JSON.stringify(merged, null, 2)}\n`);
  const per = (k: "floor" | "up" | "cli_loop" | "noop_up", shards = 1, layout: Layout = "shared") =>
    merged
      .filter((r) => shardsOf(r) === shards && layoutOf(r) === layout)
      .map((r) => [r.n, (r.s_per_user as Record<string, number | null>)[k] ?? null] as const);
  const splits = [...new Set(merged.filter((r) => layoutOf(r) === "shared").map(shardsOf))]
    .filter((k) => k > 1)
    .sort((a, b) => a - b);
  const pinned = [...new Set(merged.filter((r) => layoutOf(r) === "split").map(shardsOf))].sort((a, b) => a - b);
  const m = merged[merged.length - 1]?.machine as { cores?: number } | undefined;
  const svg = renderChart(
    "keystone-totp: time per user to enroll N users",
    `local Keystone ${String((merged[0]?.versions as { keystone?: string })?.keystone ?? "")}, ${m?.cores ?? "?"} cores; bench/results.json`,
    [
      { name: "openstack CLI loop", color: "#c0392b", dash: "6 4", points: per("cli_loop") },
      { name: "keystone-totp up", color: "#2c6fbb", points: per("up") },
      ...splits.map((k, i) => ({
        name: `up, ${k} stacks`,
        color: ["#e67e22", "#16a085", "#7f8c8d"][i % 3] as string,
        dash: "8 3",
        points: per("up", k),
      })),
      ...pinned.map((k) => ({
        name: `up, split layout${k > 1 ? `, ${k} stacks` : ""}`,
        color: "#1a3e6e",
        points: per("up", k, "split"),
      })),
      { name: "raw REST floor", color: "#27ae60", points: per("floor") },
      ...(pinned.length > 0
        ? [{ name: "floor, split layout", color: "#145a32", dash: "4 2", points: per("floor", pinned[0], "split") }]
        : []),
      { name: "no-op up", color: "#8e44ad", dash: "2 3", points: per("noop_up") },
    ],
  );
  writeFileSync(join(REPO, "bench", "time-per-user.svg"), svg);
  return merged;
}

// ------------------------------------------------------------------ main

/**
 * Runs `fn` in a layout. Split: this Keystone and its database backends, and this process
 * (the SMTP sink, the counting proxy and the /proc poller: the far side of the network and
 * the measurement) on Keystone's core; what `fn` starts of ours is put on the other core by
 * {@link onOurCore}. Affinities are given back afterwards.
 */
async function inLayout<T>(spec: LayoutSpec, fn: () => Promise<T>): Promise<T> {
  if (spec.layout === "shared") return fn();
  if (!tasksetAvailable()) throw new Error("the split layout needs taskset (util-linux): apt-get install util-linux");
  const self = affinityOf(process.pid) ?? `0-${os.cpus().length - 1}`;
  const pins = new Pinning(KEYSTONE_STATE, spec.cores);
  pin(process.pid, String(spec.cores.keystone));
  log(
    `split layout: Keystone, PostgreSQL (${pins.pinned} processes) and the bench's instruments on core ${spec.cores.keystone}; ours on core ${spec.cores.ours} (engine GOMAXPROCS ${cpusIn(String(spec.cores.ours))})`,
  );
  try {
    return await fn();
  } finally {
    pins.release();
    pin(process.pid, self);
  }
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (o.report) {
    printReport(writeOutputs([]));
    return 0;
  }
  const { auth, env: osEnv } = loadAuth();
  const meta = { machine: machine(), versions: versions() };
  log(`machine: ${JSON.stringify(meta.machine)}`);
  log(`versions: ${JSON.stringify(meta.versions)}`);
  const ks = new RawKeystone(auth);
  await ks.login();
  if (!o.keep) {
    const stale = await cleanupUsers(ks);
    cleanupStaleFiles();
    if (stale > 0) log(`removed ${stale} users left by an earlier run`);
  }
  const url = new URL(auth.authUrl);
  const proxy = await startCountingProxy(url.hostname.replace(/^\[|\]$/g, ""), Number(url.port || 80));
  const smtp = await startSmtpServer();
  const results: Result[] = [];
  try {
    for (const n of o.ns) {
      for (const layout of o.layouts) {
        const spec: LayoutSpec = { layout, cores: o.cores, cpuProf: o.cpuProf };
        const r = await benchN(n, o, ks, osEnv, smtp, proxy, meta, auth, spec);
        results.push(r);
        (smtp.received as unknown[]).length = 0; // free the messages; counters are deltas
        writeOutputs(results);
      }
    }
  } finally {
    await proxy.close();
    await smtp.close();
    ks.close();
  }
  printReport(writeOutputs(results));
  return 0;
}

function printReport(merged: readonly Result[]): void {
  process.stdout.write(`\n${table(merged)}\n\n`);
  for (const r of merged) process.stdout.write(`targets ${JSON.stringify(targets(r))}\n`);
  process.stdout.write("\nwrote bench/results.json and bench/time-per-user.svg\n");
}

try {
  process.exitCode = await main();
} catch (e) {
  log(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exitCode = 1;
}
