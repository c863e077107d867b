/**
 * Where the bench runs: the repository, the local Keystone instance that scripts/keystone.sh
 * keeps (its state folder, instance.json and openrc) and the operator credentials to reach it.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { RawAuth } from "./keystone.ts";

/** The repository root: the program under test, its scripts and the stack files live there. */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The local (`default`) Keystone instance's state folder, as scripts/keystone.sh lays it out. */
export const KEYSTONE_STATE = join(process.env.KEYSTONE_TOTP_STATE ?? join(REPO, ".local"), "keystone", "default");

/** Hosts the bench agrees to measure: it creates and deletes users, so never a real cloud. */
const LOOPBACK = ["127.0.0.1", "localhost", "[::1]"];

/** The operator credentials: as a raw client takes them, and as the OS_* variables of child processes. */
export interface LocalAuth {
  readonly auth: RawAuth;
  readonly env: Record<string, string>;
}

/** OS_* from the environment, else from the local Keystone's openrc; loopback only. */
export function loadAuth(): LocalAuth {
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
  if (!LOOPBACK.includes(url.hostname) || url.protocol !== "http:") {
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

/** The local instance's instance.json (scripts/keystone.sh), or undefined when there is none. */
function localInstance(): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(join(KEYSTONE_STATE, "instance.json"), "utf8")) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * The cache the local instance was started with (scripts/keystone.sh `--cache`): "memcached" or
 * "none" (also for instances from before the option); null when it has no instance.json.
 */
export function keystoneCache(): string | null {
  const i = localInstance();
  if (i === undefined) return null;
  return typeof i.cache === "string" && i.cache !== "" ? i.cache : "none";
}

/** Keystone's [auth] methods as the local instance was started with (they shape the rules). */
export function keystoneMethods(): string[] {
  const m = localInstance()?.methods;
  if (typeof m === "string" && m !== "") return m.split(",");
  if (Array.isArray(m)) return m.map(String);
  // not the local instance: Keystone's defaults with TOTP, as the tests run it
  return ["external", "password", "token", "oauth1", "totp", "application_credential"];
}
