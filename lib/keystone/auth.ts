/**
 * Where the operator's Keystone credentials come from, resolved the way OpenStack tools do.
 *
 * Three layers, each key taken from the highest layer that sets it:
 * 1. the `openstack:*` stack configuration keys the pulumi-openstack provider uses;
 * 2. the cloud named by `openstack:cloud` or `OS_CLOUD`, from clouds.yaml (and secure.yaml)
 *    in the standard search paths;
 * 3. the `OS_*` environment variables.
 *
 * Keys that are alternatives to each other (a token or a user; a user's ID or name; a
 * project's ID or name; a domain's ID or name) are taken together from the highest layer that
 * sets any of them (see {@link ALTERNATIVES}): the token request prefers a token and IDs, so
 * mixing layers would let a stray `OS_TOKEN` or `OS_PROJECT_ID` beat the stack's settings.
 *
 * An operator account with MFA rules adds its TOTP code (`OS_PASSCODE`, clouds.yaml `passcode`
 * with `auth_type: v3multifactor`, `openstack:passcode`). An operator command logs in with it
 * once per run and hands the token on in {@link RUN_TOKEN_ENV}, which beats every layer (see
 * operator/commands/mfa-login.ts and docs/operator-mfa.md).
 *
 * @see https://docs.openstack.org/openstacksdk/latest/user/config/configuration.html
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { load as loadYaml } from "js-yaml";
import { ConfigError } from "../errors.ts";
import { isOn } from "../util/flag.ts";

/** Fully resolved, normalised Keystone authentication settings. */
export interface KeystoneAuth {
  /** Identity v3 endpoint, always ending in `/v3` without a trailing slash. */
  readonly authUrl: string;
  readonly userId: string | undefined;
  readonly userName: string | undefined;
  readonly userDomainId: string | undefined;
  readonly userDomainName: string | undefined;
  /** Password for the `password` method; undefined when a token is used instead. */
  readonly password: string | undefined;
  /** An existing token for the `token` method (`OS_TOKEN`); preferred over a password when set. */
  readonly token: string | undefined;
  /**
   * The operator's current TOTP code (`OS_PASSCODE`, clouds.yaml `passcode`, `openstack:passcode`),
   * for an operator account with MFA rules: the token request then uses the methods `password`
   * and `totp` together, as keystoneauth's `v3multifactor`. A secret (one use on Keystone 30):
   * never logged, redacted from messages.
   */
  readonly passcode?: string | undefined;
  /**
   * True when `token` is the token of this run's MFA login, handed over by the operator command
   * through {@link RUN_TOKEN_ENV}: it cannot be renewed beyond its expiry (a new login needs a
   * fresh code), so the run is bounded by that token's lifetime.
   */
  readonly runToken?: boolean;
  readonly projectId: string | undefined;
  readonly projectName: string | undefined;
  readonly projectDomainId: string | undefined;
  readonly projectDomainName: string | undefined;
  /** PEM text of extra trusted CA certificates (read from the CA file), if any. */
  readonly caPem: string | undefined;
  /** Skip TLS verification. Off unless asked for; a warning is due whenever it is on. */
  readonly insecure: boolean;
  /** Where these settings came from, for messages (never the values). */
  readonly source: string;
}

/**
 * The token of the operator's one MFA login of a run, handed by the operator command to every
 * process of the run (the engine, the dynamic providers it starts): it beats every other
 * setting, so that no process spends the TOTP code again. Only used with the auth URL in
 * {@link RUN_TOKEN_URL_ENV}, so that the token never goes to another Keystone.
 */
export const RUN_TOKEN_ENV = "KEYSTONE_TOTP_RUN_TOKEN";
/** The identity endpoint {@link RUN_TOKEN_ENV}'s token belongs to (normalised, `.../v3`). */
export const RUN_TOKEN_URL_ENV = "KEYSTONE_TOTP_RUN_TOKEN_URL";

/** Reads one stack configuration key such as `openstack:authUrl`; undefined when unset. */
export type ConfigGetter = (key: string) => string | undefined;

/** Inputs to {@link resolveKeystoneAuth}; all optional, defaults are the process's own. */
export interface ResolveAuthOptions {
  /** Stack configuration; by default none. */
  readonly config?: ConfigGetter;
  /** Environment; default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** clouds.yaml search paths; default the standard ones (see {@link cloudsYamlPaths}). */
  readonly cloudsYamlPaths?: readonly string[];
}

type Layer = Partial<Record<keyof Omit<KeystoneAuth, "source" | "caPem" | "insecure" | "runToken">, string>> & {
  cacert?: string;
  insecure?: string;
};

/** Stack configuration keys of the pulumi-openstack provider, by our field. */
const CONFIG_KEYS: Readonly<Record<keyof Layer, readonly string[]>> = {
  authUrl: ["authUrl"],
  userId: ["userId"],
  userName: ["userName"],
  userDomainId: ["userDomainId", "domainId"],
  userDomainName: ["userDomainName", "domainName"],
  password: ["password"],
  passcode: ["passcode"],
  token: ["token"],
  projectId: ["tenantId"],
  projectName: ["tenantName"],
  projectDomainId: ["projectDomainId", "domainId"],
  projectDomainName: ["projectDomainName", "domainName"],
  cacert: ["cacertFile"],
  insecure: ["insecure"],
};

/**
 * Keys that stand for one choice: the highest layer that sets any of them sets them all, and
 * lower layers' values for them are ignored. The password is not among them: a user named in
 * the stack config may take its password from `OS_PASSWORD` or secure.yaml.
 */
const ALTERNATIVES: readonly (readonly (keyof Layer)[])[] = [
  ["token", "userId", "userName"],
  ["userDomainId", "userDomainName"],
  ["projectId", "projectName"],
  ["projectDomainId", "projectDomainName"],
];

/** `OS_*` environment variables, by our field. */
const ENV_KEYS: Readonly<Record<keyof Layer, readonly string[]>> = {
  authUrl: ["OS_AUTH_URL"],
  userId: ["OS_USER_ID"],
  userName: ["OS_USERNAME"],
  userDomainId: ["OS_USER_DOMAIN_ID", "OS_DOMAIN_ID"],
  userDomainName: ["OS_USER_DOMAIN_NAME", "OS_DOMAIN_NAME"],
  password: ["OS_PASSWORD"],
  passcode: ["OS_PASSCODE"],
  token: ["OS_TOKEN"],
  projectId: ["OS_PROJECT_ID", "OS_TENANT_ID"],
  projectName: ["OS_PROJECT_NAME", "OS_TENANT_NAME"],
  projectDomainId: ["OS_PROJECT_DOMAIN_ID", "OS_DOMAIN_ID"],
  projectDomainName: ["OS_PROJECT_DOMAIN_NAME", "OS_DOMAIN_NAME"],
  cacert: ["OS_CACERT"],
  insecure: ["OS_INSECURE"],
};

/** clouds.yaml `auth:` keys, by our field. */
const CLOUDS_AUTH_KEYS: Readonly<Partial<Record<keyof Layer, readonly string[]>>> = {
  authUrl: ["auth_url"],
  userId: ["user_id"],
  userName: ["username"],
  userDomainId: ["user_domain_id", "domain_id"],
  userDomainName: ["user_domain_name", "domain_name"],
  password: ["password"],
  // keystoneauth's v3multifactor (auth_type: v3multifactor, auth_methods: [v3password, v3totp]).
  passcode: ["passcode"],
  token: ["token"],
  projectId: ["project_id", "tenant_id"],
  projectName: ["project_name", "tenant_name"],
  projectDomainId: ["project_domain_id", "domain_id"],
  projectDomainName: ["project_domain_name", "domain_name"],
};

/**
 * The clouds.yaml files OpenStack tools read, in order: `OS_CLIENT_CONFIG_FILE`, the current
 * directory, `~/.config/openstack`, `/etc/openstack`.
 */
export function cloudsYamlPaths(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const paths: string[] = [];
  const explicit = env.OS_CLIENT_CONFIG_FILE;
  if (explicit) paths.push(explicit);
  const xdg = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
  paths.push(resolve("clouds.yaml"), join(xdg, "openstack", "clouds.yaml"), "/etc/openstack/clouds.yaml");
  return paths;
}

function firstDefined(get: (k: string) => string | undefined, keys: readonly string[]): string | undefined {
  for (const k of keys) {
    const v = get(k);
    if (v !== undefined && v !== "") return v;
  }
  return undefined;
}

function layerFrom(
  keys: Readonly<Partial<Record<keyof Layer, readonly string[]>>>,
  get: (k: string) => string | undefined,
): Layer {
  const out: Layer = {};
  for (const [field, names] of Object.entries(keys) as [keyof Layer, readonly string[]][]) {
    const v = firstDefined(get, names);
    if (v !== undefined) out[field] = v;
  }
  return out;
}

function readYaml(path: string): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  try {
    const doc = loadYaml(text);
    return doc && typeof doc === "object" ? (doc as Record<string, unknown>) : {};
  } catch (cause) {
    throw new ConfigError(`${path} is not valid YAML; fix it or unset OS_CLOUD`, { cause });
  }
}

function asRecord(v: unknown): Record<string, unknown> {
  return v && typeof v === "object" ? (v as Record<string, unknown>) : {};
}

function cloudLayer(cloud: string, paths: readonly string[]): { layer: Layer; file: string } {
  for (const path of paths) {
    const doc = readYaml(path);
    if (!doc) continue;
    const entry = asRecord(asRecord(doc.clouds)[cloud]);
    if (Object.keys(entry).length === 0) continue;
    // secure.yaml beside clouds.yaml may hold the password, as openstacksdk allows.
    const secure = asRecord(asRecord(readYaml(path.replace(/clouds\.yaml$/, "secure.yaml"))?.clouds)[cloud]);
    const auth = { ...asRecord(entry.auth), ...asRecord(secure.auth) };
    const str = (v: unknown): string | undefined =>
      typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : undefined;
    const layer = layerFrom(CLOUDS_AUTH_KEYS, (k) => str(auth[k]));
    const cacert = str(entry.cacert);
    if (cacert) layer.cacert = cacert;
    if (entry.verify === false || entry.verify === "false") layer.insecure = "true";
    return { layer, file: path };
  }
  throw new ConfigError(
    `cloud '${cloud}' (from OS_CLOUD or openstack:cloud) is not defined in any clouds.yaml: looked in ${paths.join(", ")}`,
  );
}

/**
 * Normalises an identity endpoint to its v3 root (`https://host:5000/v3`).
 *
 * @param setting - where the URL came from (e.g. `OS_AUTH_URL`), for messages: an unparsable
 *   URL is never echoed, as it may hold a user name, password or token.
 * @throws {ConfigError} if it is not an http(s) URL or names identity v2.
 */
export function normaliseAuthUrl(raw: string, setting = "the auth URL setting"): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    // Not the parser's error as a cause either: Node.js puts the whole input in it.
    throw new ConfigError(
      `the auth URL in ${setting} is not a URL (its value is not shown: it may hold credentials); ` +
        "expected e.g. https://keystone.example.com:5000/v3",
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`auth URL '${url.origin}' must be http:// or https://`);
  }
  if (url.username || url.password) {
    throw new ConfigError("auth URL must not contain credentials; use OS_USERNAME and OS_PASSWORD");
  }
  let path = url.pathname.replace(/\/+$/, "");
  if (/\/v2(\.0)?$/.test(path)) {
    throw new ConfigError(`auth URL ${url.origin}${path} is identity v2, which is gone; use the /v3 endpoint`);
  }
  if (!/\/v3$/.test(path)) path += "/v3";
  return `${url.origin}${path}`;
}

function readCa(value: string | undefined): string | undefined {
  if (!value) return undefined;
  if (value.includes("-----BEGIN")) return value;
  try {
    return readFileSync(value, "utf8");
  } catch (cause) {
    throw new ConfigError(`cannot read the CA bundle ${value} (OS_CACERT / openstack:cacertFile / cacert)`, {
      cause,
    });
  }
}

/**
 * Resolves the operator's Keystone credentials from stack config, clouds.yaml and `OS_*`.
 *
 * @throws {ConfigError} `E_CONFIG` when nothing is configured (naming the variables to set),
 *   when a named cloud is missing, or when the settings are incomplete.
 */
export function resolveKeystoneAuth(options: ResolveAuthOptions = {}): KeystoneAuth {
  const env = options.env ?? process.env;
  const config: ConfigGetter = options.config ?? (() => undefined);
  const fromEnv = layerFrom(ENV_KEYS, (k) => env[k]);
  const fromConfig = layerFrom(CONFIG_KEYS, (k) => config(`openstack:${k}`));
  const cloud = config("openstack:cloud") || env.OS_CLOUD;
  const sources: string[] = [];
  let fromCloud: Layer = {};
  if (cloud) {
    const found = cloudLayer(cloud, options.cloudsYamlPaths ?? cloudsYamlPaths(env));
    fromCloud = found.layer;
    sources.push(`cloud '${cloud}' in ${found.file}`);
  }
  if (Object.keys(fromConfig).length > 0) sources.unshift("stack config openstack:*");
  if (Object.keys(fromEnv).length > 0) sources.push("OS_* environment");
  const merged: Layer = { ...fromEnv, ...fromCloud, ...fromConfig };
  const layers = [fromConfig, fromCloud, fromEnv]; // highest first
  for (const keys of ALTERNATIVES) {
    const top = layers.find((l) => keys.some((k) => l[k] !== undefined)) ?? {};
    for (const k of keys) {
      if (top[k] === undefined) delete merged[k];
      else merged[k] = top[k];
    }
  }
  const authUrlSetting =
    fromConfig.authUrl !== undefined
      ? "openstack:authUrl"
      : fromCloud.authUrl !== undefined
        ? `auth_url of cloud '${cloud}'`
        : "OS_AUTH_URL";

  if (!merged.authUrl) {
    throw new ConfigError(
      "no Keystone credentials configured: set OS_CLOUD (with a clouds.yaml), or OS_AUTH_URL, " +
        "OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, OS_USER_DOMAIN_NAME and OS_PROJECT_DOMAIN_NAME, " +
        "or the stack config keys openstack:authUrl, openstack:userName, openstack:password (secret), " +
        "openstack:tenantName, openstack:userDomainName and openstack:projectDomainName",
    );
  }
  const where = sources.join(" + ") || "configuration";
  if (!merged.token) {
    if (!merged.userId && !merged.userName) {
      throw new ConfigError(`no user given (${where}): set OS_USERNAME or OS_USER_ID, or openstack:userName`);
    }
    if (!merged.password) {
      throw new ConfigError(`no password given (${where}): set OS_PASSWORD or openstack:password (as a secret)`);
    }
    if (merged.userName && !merged.userId && !merged.userDomainId && !merged.userDomainName) {
      merged.userDomainName = "Default";
    }
  }
  if (!merged.projectId && !merged.projectName) {
    throw new ConfigError(
      `no project given (${where}): set OS_PROJECT_NAME or OS_PROJECT_ID, or openstack:tenantName; ` +
        "credential management needs a project-scoped token",
    );
  }
  if (merged.projectName && !merged.projectId && !merged.projectDomainId && !merged.projectDomainName) {
    merged.projectDomainName = "Default";
  }
  const authUrl = normaliseAuthUrl(merged.authUrl, authUrlSetting);
  const runToken = env[RUN_TOKEN_ENV];
  if (runToken && env[RUN_TOKEN_URL_ENV] === authUrl) {
    // This run's MFA login, done once by the operator command: re-authenticate with its token
    // (Keystone accepts `methods: ["token"]` from an MFA token) instead of spending a code.
    return {
      authUrl,
      userId: undefined,
      userName: undefined,
      userDomainId: undefined,
      userDomainName: undefined,
      password: undefined,
      passcode: undefined,
      token: runToken,
      runToken: true,
      projectId: merged.projectId,
      projectName: merged.projectName,
      projectDomainId: merged.projectDomainId,
      projectDomainName: merged.projectDomainName,
      caPem: readCa(merged.cacert),
      insecure: isOn(merged.insecure),
      source: `the token of this run's MFA login (${RUN_TOKEN_ENV}) for ${where}`,
    };
  }
  return {
    authUrl,
    userId: merged.userId,
    userName: merged.userName,
    userDomainId: merged.userDomainId,
    userDomainName: merged.userDomainName,
    password: merged.password,
    ...(merged.passcode !== undefined && !merged.token ? { passcode: merged.passcode.trim() } : {}),
    token: merged.token,
    projectId: merged.projectId,
    projectName: merged.projectName,
    projectDomainId: merged.projectDomainId,
    projectDomainName: merged.projectDomainName,
    caPem: readCa(merged.cacert),
    insecure: isOn(merged.insecure),
    source: where,
  };
}
