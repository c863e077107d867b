/**
 * The stack(s) one measurement runs on: one stack driven by scripts/provision.ts, or with
 * `shards` > 1 the stacks NAME-0 .. NAME-(K-1) driven by scripts/shards.ts, whose settings are
 * copied from the never-deployed stack NAME (its config file must then be in the project, where
 * shards.ts reads it). Each measurement gets a file backend of its own in a temp folder.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { dump as dumpYaml, load as loadYaml } from "js-yaml";
import { type ChildOutput, runChild } from "./child.ts";
import { type LayoutSpec, onOurCore } from "./layout.ts";
import { REPO } from "./local.ts";

/** Mail rate given to the program, messages/s: the highest accepted, so that the relay limit is not measured. */
export const SEND_RATE = 1000;
/** Characters of a failed pulumi command's stderr kept in the error. */
const ERROR_TAIL = 2000;

/** What a measurement's stacks are made of. */
export interface StackSpec {
  /** Users; names the stack (`bench-<n>-<random>`) and its temp folder. */
  readonly n: number;
  /** The users CSV file. */
  readonly csv: string;
  /** The SMTP sink's URL. */
  readonly smtpUrl: string;
  /** The counting proxy's port: the program reaches Keystone through it. */
  readonly proxyPort: number;
  /** The operator's OS_* variables (OS_AUTH_URL is replaced by the proxy's). */
  readonly osEnv: Record<string, string>;
  /** Stacks (1: provision.ts on one stack) and how many shards.ts runs at once. */
  readonly shards: number;
  readonly shardConcurrency: number;
  readonly layout: LayoutSpec;
  /** PULUMI_BACKEND_URL (postgres://...); undefined: a file backend in the stack's temp folder. */
  readonly stateBackend?: string | undefined;
}

/** A measurement's stack(s): see the header. */
export class Stack {
  readonly name: string;
  readonly dir: string;
  readonly configFile: string;
  readonly env: Record<string, string>;
  readonly spec: StackSpec;
  private created = false;

  constructor(spec: StackSpec) {
    this.spec = spec;
    this.name = `bench-${spec.n}-${randomBytes(3).toString("hex")}`;
    this.dir = mkdtempSync(join(os.tmpdir(), `kt-bench-${spec.n}-`));
    mkdirSync(join(this.dir, "backend"));
    this.configFile = join(this.dir, `Pulumi.${this.name}.yaml`);
    writeFileSync(
      this.configFile,
      [
        "config:",
        `  keystone-totp:usersCsv: ${JSON.stringify(spec.csv)}`,
        `  keystone-totp:smtpUrl: ${JSON.stringify(spec.smtpUrl)}`,
        `  keystone-totp:mailFrom: "keystone-totp bench <noreply@example.com>"`,
        `  keystone-totp:issuer: "keystone-totp bench"`,
        `  keystone-totp:sendRatePerSecond: "${SEND_RATE}"`,
        "",
      ].join("\n"),
    );
    // The operator's own Pulumi passphrase and OS_* stay out: each measurement has its own.
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (v !== undefined && !k.startsWith("OS_") && !k.startsWith("PULUMI_CONFIG_PASSPHRASE")) base[k] = v;
    }
    this.env = {
      ...base,
      ...spec.osEnv,
      OS_AUTH_URL: `http://127.0.0.1:${spec.proxyPort}/v3`,
      PULUMI_BACKEND_URL: spec.stateBackend ?? `file://${join(this.dir, "backend")}`,
      PULUMI_CONFIG_PASSPHRASE: randomBytes(16).toString("hex"),
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
    };
  }

  /** The stacks that hold the users. */
  stacks(): string[] {
    const { shards } = this.spec;
    return shards > 1 ? Array.from({ length: shards }, (_, i) => `${this.name}-${i}`) : [this.name];
  }

  /** With shards: creates the settings stack NAME in the project, with this stack's settings. */
  async init(): Promise<void> {
    if (this.spec.shards <= 1) return;
    const r = await this.pulumi(["stack", "init", "--secrets-provider", "passphrase"]);
    if (r.code !== 0) throw new Error(`pulumi stack init failed: ${r.stderr.slice(-ERROR_TAIL)}`);
    const file = join(REPO, `Pulumi.${this.name}.yaml`);
    const doc = (loadYaml(readFileSync(file, "utf8")) ?? {}) as Record<string, unknown>;
    const settings = loadYaml(readFileSync(this.configFile, "utf8")) as { config: Record<string, unknown> };
    writeFileSync(file, dumpYaml({ ...doc, config: settings.config }), { mode: 0o600 });
  }

  /** Runs `pulumi ARGS` on one of the stacks (on our core in the split layout). */
  pulumi(args: string[], stack = this.name): Promise<ChildOutput> {
    const argv = onOurCore(this.spec.layout, ["pulumi", ...args, "--stack", stack, "--non-interactive"]);
    return runChild(argv, { cwd: REPO, env: this.env });
  }

  /**
   * The script and arguments that run VERB on this stack: scripts/provision.ts with its config
   * file, or scripts/shards.ts over the K stacks (the first run copies the settings, once, as an
   * operator would).
   */
  programArgs(verb: string): string[] {
    const { shards, shardConcurrency } = this.spec;
    const args =
      shards > 1
        ? [
            join(REPO, "scripts/shards.ts"),
            verb,
            ...["--stack-prefix", this.name, "--shards", String(shards)],
            ...["--concurrency", String(shardConcurrency)],
            ...(this.created ? [] : ["--config-from", this.name]),
          ]
        : [join(REPO, "scripts/provision.ts"), verb, "--stack", this.name, "--config-file", this.configFile];
    this.created = true;
    return args;
  }

  /** Removes the stacks, their files in the project and the temp folder. */
  async remove(): Promise<void> {
    for (const stack of [...(this.spec.shards > 1 ? this.stacks() : []), this.name]) {
      await this.pulumi(["stack", "rm", "--yes", "--force"], stack);
      rmSync(join(REPO, `Pulumi.${stack}.yaml`), { force: true });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
