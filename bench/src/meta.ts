/**
 * What each row records besides its figures: the machine and the versions it was measured
 * with, so that rows from different days and machines can be told apart (and, with the git
 * commit and whether the product code was dirty, reproduced).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { keystoneCache, REPO } from "./local.ts";
import { round } from "./log.ts";

/** The trimmed stdout of a command, or null when it is missing or fails. */
export function commandOutput(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch {
    return null;
  }
}

/** The machine a row was measured on. */
export function machine() {
  return {
    cores: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? null,
    memory_gb: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    load_average_at_start: os.loadavg().map((v) => round(v)),
  };
}

/** The paths whose changes change what is measured (the product, and the script `up` runs). */
const PRODUCT = ["index.ts", "lib", "operator", "providers", "scripts/provision.ts"];

/** The versions of everything a row's figures depend on. */
export function versions() {
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
    pulumi_cli: commandOutput("pulumi", ["version"]),
    pulumi_sdk: pkg("@pulumi/pulumi"),
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format, not a template
    keystone: commandOutput("dpkg-query", ["-W", "-f", "${Version}", "keystone"]),
    // Keystone's cache changes what each request costs it (about 8x per GET here): see bench/README.md.
    keystone_cache: keystoneCache(),
    openstackclient: commandOutput("openstack", ["--version"])?.replace(/^openstack\s*/, "") ?? null,
    keystone_totp_commit: commandOutput("git", ["-C", REPO, "rev-parse", "--short", "HEAD"]),
    keystone_totp_dirty: (commandOutput("git", ["-C", REPO, "status", "--porcelain", "--", ...PRODUCT]) ?? "") !== "",
    nodemailer: pkg("nodemailer"),
    smtp_server: pkg("smtp-server"),
  };
}

/** The machine and versions, recorded once per bench run and copied into each row. */
export interface Meta {
  readonly machine: ReturnType<typeof machine>;
  readonly versions: ReturnType<typeof versions>;
}
