/**
 * Drives the real Pulumi CLI on this repository's program (index.ts), one throwaway stack per
 * test file: a file backend in a temp folder, passphrase secrets, and its own config file.
 * The program runs through `scripts/provision.ts` (the Automation API) unless a stack is made
 * with `engine: "plain"`: then plain `pulumi up` runs it through the Node.js language host.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dump as dumpYaml, load as loadYaml } from "js-yaml";
import { REPO } from "./keystone.ts";
import { collect } from "./process.ts";
import { registerSecrets } from "./secrets.ts";

/** Verbs that run the program. */
const ENGINE_VERBS = new Set(["up", "preview", "refresh", "destroy"]);

/**
 * What runs the program for the engine verbs: `provision` (scripts/provision.ts, the program
 * served inline by the Automation API) or `plain` (the `pulumi` CLI itself, which starts the
 * Node.js language host on index.ts; see test/support/language-host.ts).
 */
export type Engine = "provision" | "plain";

/** Folder holding the pulumi binary, from scripts/get-pulumi.sh (built once, cached). */
export function pulumiBinDir(): string {
  if (process.env.PULUMI_BIN_DIR) return process.env.PULUMI_BIN_DIR;
  const out = execFileSync("bash", [join(REPO, "scripts/get-pulumi.sh"), "--print-bin-dir"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  }).trim();
  process.env.PULUMI_BIN_DIR = out;
  return out;
}

function unwrapSecret(v: unknown): unknown {
  if (v && typeof v === "object" && "plaintext" in v)
    return JSON.parse(String((v as { plaintext: unknown }).plaintext));
  return v;
}

/** The result of one CLI command. */
export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A stack of the repo's project in a private file backend. */
export class TestStack {
  readonly name: string;
  readonly dir: string;
  readonly configFile: string;
  readonly logFile: string;
  readonly engine: Engine;
  /** The Pulumi project the CLI runs in: this repository, or another project's folder. */
  readonly cwd: string;
  private readonly env: Record<string, string>;

  /**
   * @param o.cwd - another Pulumi project to run the CLI in (a consumer's, say); default this
   *   repository. Engine verbs there always run through the plain CLI.
   */
  constructor(prefix: string, extraEnv: Record<string, string> = {}, o: { engine?: Engine; cwd?: string } = {}) {
    this.engine = o.cwd === undefined ? (o.engine ?? "provision") : "plain";
    this.cwd = o.cwd ?? REPO;
    this.name = `${prefix}-${randomBytes(3).toString("hex")}`;
    this.dir = mkdtempSync(join(tmpdir(), `kt-${prefix}-`));
    this.configFile = join(this.dir, `Pulumi.${this.name}.yaml`);
    this.logFile = join(REPO, ".local", "logs", `pulumi-${this.name}.log`);
    mkdirSync(join(REPO, ".local", "logs"), { recursive: true, mode: 0o700 });
    const passphrase = `pp-${randomBytes(16).toString("hex")}`;
    registerSecrets(passphrase);
    mkdirSync(join(this.dir, "backend"));
    mkdirSync(join(this.dir, "home"));
    writeFileSync(this.configFile, "config: {}\n");
    const bin = pulumiBinDir();
    this.env = {
      ...(process.env as Record<string, string>),
      PATH: `${join(REPO, "node_modules/.bin")}:${bin}:${process.env.PATH}`,
      PULUMI_BACKEND_URL: `file://${join(this.dir, "backend")}`,
      PULUMI_CONFIG_PASSPHRASE: passphrase,
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
      // The engine's own behaviour is what most tests observe: the no-op skip is off unless a
      // test turns it on (KEYSTONE_TOTP_NO_SKIP=0; test/e2e/noop-skip.test.ts).
      KEYSTONE_TOTP_NO_SKIP: "1",
      ...extraEnv,
    };
  }

  /** Runs `pulumi <args>` in the project (default the repo) with this stack and config file. */
  async run(
    args: string[],
    opts: { allowFail?: boolean; env?: Record<string, string>; secretStdout?: boolean; secretArg?: number } = {},
  ): Promise<RunResult> {
    const takesConfig = args[0] === "config" || ENGINE_VERBS.has(args[0] ?? "");
    const flags = [
      "--stack",
      this.name,
      ...(takesConfig ? ["--config-file", this.configFile] : []),
      "--non-interactive",
    ];
    // Flags go before a `--`, after which everything is a value.
    const dashes = args.indexOf("--");
    const full = dashes < 0 ? [...args, ...flags] : [...args.slice(0, dashes), ...flags, ...args.slice(dashes)];
    // Commands that run the program go through scripts/provision.ts (the Automation API,
    // program inline), which needs no Node.js language host, unless this stack is plain.
    const viaProvision = this.engine === "provision" && ENGINE_VERBS.has(args[0] ?? "");
    const [cmd, cmdArgs] = viaProvision
      ? ["node", [join(REPO, "scripts/provision.ts"), ...full.filter((a) => a !== "--non-interactive")]]
      : ["pulumi", full];
    const t0 = Date.now();
    const r = await collect(cmd, cmdArgs, { cwd: this.cwd, env: { ...this.env, ...opts.env }, stdio: "pipe" });
    // Commands that print or take secrets are logged without them, like any operator log.
    const shown = full.map((a, i) => (i === opts.secretArg ? "[secret]" : a)).join(" ");
    const out = opts.secretStdout ? "[stdout withheld: it holds secrets]" : r.stdout;
    this.log(`pulumi ${shown}`, { ...r, stdout: out }, t0);
    if (r.code !== 0 && !opts.allowFail) {
      throw new Error(`pulumi ${shown} exited ${r.code}:\n${out.slice(-4000)}\n${r.stderr.slice(-4000)}`);
    }
    return r;
  }

  /** Creates the stack. */
  async init(): Promise<void> {
    await this.run(["stack", "init", "--secrets-provider", "passphrase"]);
  }

  /** Sets a config value (optionally as a secret, optionally as a structured path). */
  async set(key: string, value: string, o: { secret?: boolean; path?: boolean } = {}): Promise<void> {
    const args = ["config", "set", ...(o.path ? ["--path"] : []), ...(o.secret ? ["--secret"] : ["--plaintext"]), key];
    if (o.secret) registerSecrets(value);
    // the value's index in the final argument list: after the flags that run() inserts
    const flagCount = 5;
    await this.run([...args, "--", value], o.secret ? { secretArg: args.length + flagCount + 1 } : {});
  }

  /** Sets a structured config value from JSON. */
  async setJson(key: string, value: unknown): Promise<void> {
    // `pulumi config set --path` cannot replace a whole map in one go: edit the file instead.
    const doc = (loadYaml(readFileSync(this.configFile, "utf8")) ?? {}) as { config?: Record<string, unknown> };
    doc.config = { ...(doc.config ?? {}), [key]: value };
    writeFileSync(this.configFile, dumpYaml(doc));
  }

  up(o: { allowFail?: boolean } = {}): Promise<RunResult> {
    return this.run(["up", "--yes", "--skip-preview"], o);
  }

  preview(o: { allowFail?: boolean } = {}): Promise<RunResult> {
    return this.run(["preview", "--diff"], o);
  }

  /** `up` that fails when anything would change. */
  upNoChanges(): Promise<RunResult> {
    return this.run(["up", "--yes", "--expect-no-changes"]);
  }

  refresh(): Promise<RunResult> {
    return this.run(["refresh", "--yes", "--skip-preview"]);
  }

  destroy(): Promise<RunResult> {
    return this.run(["destroy", "--yes", "--skip-preview"]);
  }

  /** `pulumi stack export` (secrets stay encrypted). */
  async exportText(): Promise<string> {
    return (await this.run(["stack", "export"])).stdout;
  }

  /**
   * The checkpoint as the file backend holds it right now, read from disk without the CLI (so
   * that a test can watch a running `up` save its steps); undefined while there is none or
   * while it is being rewritten. Secrets stay encrypted.
   */
  checkpointNow():
    | { resources?: { type: string; outputs?: Record<string, unknown> }[]; pending_operations?: { type: string }[] }
    | undefined {
    const file = join(this.dir, "backend", ".pulumi", "stacks", "keystone-totp", `${this.name}.json`);
    try {
      return (JSON.parse(readFileSync(file, "utf8")) as { checkpoint?: { latest?: never } }).checkpoint?.latest;
    } catch {
      return undefined;
    }
  }

  /** Stack outputs; with `showSecrets` the plaintext values (tests only, never logged). */
  async outputs(showSecrets = false): Promise<Record<string, unknown>> {
    const r = await this.run(["stack", "output", "--json", ...(showSecrets ? ["--show-secrets"] : [])], {
      secretStdout: showSecrets,
    });
    return JSON.parse(r.stdout) as Record<string, unknown>;
  }

  /**
   * Outputs of every resource of a type, from `pulumi stack export --show-secrets` (tests
   * only; the plaintext is registered for the secret scan and never logged).
   */
  async resourceOutputs(typeSuffix = ":TotpCredential"): Promise<Record<string, Record<string, unknown>>> {
    const r = await this.run(["stack", "export", "--show-secrets"], { secretStdout: true });
    const dep = JSON.parse(r.stdout) as {
      deployment: { resources?: { urn: string; type: string; outputs?: Record<string, unknown> }[] };
    };
    const out: Record<string, Record<string, unknown>> = {};
    for (const res of dep.deployment.resources ?? []) {
      if (!res.type.endsWith(typeSuffix)) continue;
      const name = res.urn.split("::").pop() ?? res.urn;
      // --show-secrets keeps the secret envelope and puts the JSON-encoded value in `plaintext`.
      const plain = Object.fromEntries(Object.entries(res.outputs ?? {}).map(([k, v]) => [k, unwrapSecret(v)]));
      out[name] = plain;
      registerSecrets(String(plain.secret ?? ""), String(plain.otpauthUri ?? ""));
    }
    return out;
  }

  /**
   * Runs an operator script (`scripts/NAME.ts`: rotate, status, ...) on this stack, with its
   * config file, as an operator would; never rejects (the exit code is part of the result).
   * `stackName` names another stack of the same backend (default this one).
   */
  async script(
    name: string,
    args: string[],
    env: Record<string, string> = {},
    stackName = this.name,
  ): Promise<RunResult> {
    const full = [join(REPO, `scripts/${name}.ts`), ...args, "--stack", stackName, "--config-file", this.configFile];
    const t0 = Date.now();
    const r = await collect("node", full, { cwd: REPO, env: { ...this.env, ...env }, stdio: "pipe" });
    this.log(`${name} ${args.join(" ")}`, r, t0);
    return r;
  }

  /** Appends a command, what it printed, its exit code and its time since `startedMs` to the stack's log. */
  private log(command: string, r: RunResult, startedMs: number): void {
    const seconds = ((Date.now() - startedMs) / 1000).toFixed(1);
    appendFileSync(this.logFile, `$ ${command}\n${r.stdout}\n${r.stderr}\n[exit ${r.code} in ${seconds} s]\n`, {
      mode: 0o600,
    });
  }

  /** The environment this stack's commands run with (for commands a test starts itself). */
  environment(extra: Record<string, string> = {}): Record<string, string> {
    return { ...this.env, ...extra };
  }

  /** Removes the stack and its temp folder. */
  async remove(): Promise<void> {
    await this.run(["stack", "rm", "--yes", "--force"], { allowFail: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
