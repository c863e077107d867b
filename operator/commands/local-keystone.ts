/**
 * The embedded default for Keystone settings: the local Keystone that `npm run demo` (and
 * `npm test`) start with scripts/keystone.sh. The demo uses it when the operator set no
 * Keystone of their own; every later operator command (status, doctor, rotate, provision,
 * verify-code) must then find the same Keystone, or the demo's stack cannot be looked after.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The scripts/keystone.sh instance the demo starts and whose settings are the default. */
export const LOCAL_INSTANCE = "default";

/**
 * `OS_*` variables that make up Keystone settings (see lib/keystone/auth.ts). The local
 * default replaces them as a whole: a stray `OS_TOKEN` or `OS_PROJECT_ID` of another cloud
 * must not be mixed with the local admin's password.
 */
const OS_AUTH_VARIABLES: readonly string[] = [
  "OS_AUTH_URL",
  "OS_USER_ID",
  "OS_USERNAME",
  "OS_USER_DOMAIN_ID",
  "OS_USER_DOMAIN_NAME",
  "OS_DOMAIN_ID",
  "OS_DOMAIN_NAME",
  "OS_PASSWORD",
  "OS_PASSCODE",
  "OS_TOKEN",
  "OS_PROJECT_ID",
  "OS_TENANT_ID",
  "OS_PROJECT_NAME",
  "OS_TENANT_NAME",
  "OS_PROJECT_DOMAIN_ID",
  "OS_PROJECT_DOMAIN_NAME",
  "OS_CACERT",
  "OS_INSECURE",
];

/** What scripts/keystone.sh writes in an instance's instance.json (the fields used here). */
export interface InstanceFile {
  readonly authUrl?: unknown;
  readonly username?: unknown;
  readonly password?: unknown;
  readonly projectName?: unknown;
  readonly userDomainName?: unknown;
  readonly projectDomainName?: unknown;
}

/** The folder of the local state (Keystone instances, logs): `KEYSTONE_TOTP_STATE`, else `REPO/.local`. */
export function localStateDir(repo: string, env: NodeJS.ProcessEnv = process.env): string {
  return env.KEYSTONE_TOTP_STATE || join(repo, ".local");
}

/**
 * The `OS_*` variables that log in as an instance's admin: the one mapping of instance.json to
 * Keystone settings, for the commands' local default and the tests alike.
 *
 * @returns undefined when a field is missing or empty (a half-written or foreign file).
 */
export function instanceEnv(inst: InstanceFile): Record<string, string> | undefined {
  const values: Record<string, unknown> = {
    OS_AUTH_URL: inst.authUrl,
    OS_USERNAME: inst.username,
    OS_PASSWORD: inst.password,
    OS_PROJECT_NAME: inst.projectName,
    OS_USER_DOMAIN_NAME: inst.userDomainName,
    OS_PROJECT_DOMAIN_NAME: inst.projectDomainName,
  };
  if (Object.values(values).some((v) => typeof v !== "string" || v === "")) return undefined;
  return values as Record<string, string>;
}

/** Where a local Keystone default was found, for the one-line note. */
export interface LocalKeystoneDefault {
  /** The instance's identity endpoint. */
  readonly authUrl: string;
  /** The instance.json it came from. */
  readonly file: string;
}

/** Options of {@link useLocalKeystoneByDefault}. */
export interface LocalKeystoneOptions {
  /** The environment to read and complete; default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Keys of the stack's configuration, when a stack is involved (`openstack:*` wins). */
  readonly configKeys?: Iterable<string>;
  /** The project folder, whose `.local` holds the instance (unless `KEYSTONE_TOTP_STATE`). */
  readonly repo: string;
}

/**
 * Puts the local Keystone's admin settings into `env` (`OS_AUTH_URL`, `OS_USERNAME`, ...) when
 * the operator configured no Keystone at all: neither `OS_AUTH_URL` nor `OS_CLOUD` in the
 * environment, nor any `openstack:*` key in the stack's configuration, and the local instance
 * exists. Changing the environment (rather than handing settings around) is what reaches the
 * dynamic providers too: the engine starts them with this process's environment.
 *
 * @returns the default used, or undefined when the operator's own settings apply (or there is
 *   no local instance, so the usual "no Keystone credentials" error stands).
 */
export function useLocalKeystoneByDefault(o: LocalKeystoneOptions): LocalKeystoneDefault | undefined {
  const env = o.env ?? process.env;
  if (env.OS_AUTH_URL || env.OS_CLOUD) return undefined;
  for (const key of o.configKeys ?? []) if (key.startsWith("openstack:")) return undefined;
  const file = join(localStateDir(o.repo, env), "keystone", LOCAL_INSTANCE, "instance.json");
  if (!existsSync(file)) return undefined;
  let inst: InstanceFile;
  try {
    inst = JSON.parse(readFileSync(file, "utf8")) as InstanceFile;
  } catch {
    // A half-written or damaged file: as if there were none; the usual error names what to set.
    return undefined;
  }
  const values = instanceEnv(inst);
  if (values === undefined) return undefined;
  for (const name of OS_AUTH_VARIABLES) delete env[name];
  Object.assign(env, values);
  return { authUrl: values.OS_AUTH_URL as string, file };
}

/**
 * {@link useLocalKeystoneByDefault}, with a note on stderr naming the Keystone used, so that an
 * operator never wonders which Keystone a command talked to.
 */
export function useLocalKeystoneWithNote(command: string, o: LocalKeystoneOptions): void {
  const used = useLocalKeystoneByDefault(o);
  if (used === undefined) return;
  process.stderr.write(
    `${command}: no OS_AUTH_URL, OS_CLOUD or openstack:* config: using the local Keystone at ${used.authUrl} ` +
      `(${used.file}; start it with 'bash scripts/keystone.sh start')\n`,
  );
}
