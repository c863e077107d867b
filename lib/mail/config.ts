/**
 * Mail settings, normalised once into a {@link MailConfig}: either an SMTP relay or, by default,
 * an outbox folder of `.eml` files that an operator sends on by other means.
 *
 * The SMTP URL may carry a password. It is kept only in non-enumerable fields, so that printing
 * or serialising a config (console.log, JSON.stringify, test diffs) never shows it, and no error
 * message repeats the URL; {@link SmtpMailConfig.displayUrl} is the printable form. (The template
 * is non-enumerable too, for brevity.) So copy a config by reference, not by spreading it.
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import { resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { defaultTemplate, loadTemplate, parseMailbox, type Template } from "./message.ts";

/** Stack configuration keys, named in error messages. */
export const MAIL_CONFIG_KEYS = {
  smtpUrl: "keystone-totp:smtpUrl",
  mailFrom: "keystone-totp:mailFrom",
  outboxDir: "keystone-totp:outboxDir",
  sendRatePerSecond: "keystone-totp:sendRatePerSecond",
  allowInsecureSmtp: "keystone-totp:allowInsecureSmtp",
  templateFile: "keystone-totp:mailTemplate",
  smtpCaFile: "keystone-totp:smtpCaFile",
} as const;

/** Outbox folder when none is set, relative to the project directory. */
export const DEFAULT_OUTBOX_DIR = "outbox";
/** Sender for the outbox when none is set; an SMTP relay needs a real one. */
export const DEFAULT_OUTBOX_FROM = "OpenStack <noreply@localhost>";
/** Messages per second when no rate is set: gentle on shared relays, 1,000 users in 100 s. */
export const DEFAULT_SEND_RATE_PER_SECOND = 10;
/** The highest rate accepted, in messages per second. */
export const MAX_SEND_RATE_PER_SECOND = 1000;
/**
 * SMTP connections open at once. One connection carries the default rate easily, and a
 * second one doubled the connections of a 100-message run (measured by the bench) for no gain.
 */
export const SMTP_MAX_CONNECTIONS = 1;
/**
 * Messages sent over one connection before it is replaced. With {@link SMTP_MAX_CONNECTIONS}
 * this keeps to the goal of at most one connection per 100 messages at any volume.
 */
export const SMTP_MAX_MESSAGES_PER_CONNECTION = 500;
/** Port for `smtp://` URLs without one: message submission with STARTTLS (RFC 6409). */
export const SMTP_DEFAULT_PORT = 587;
/** Port for `smtps://` URLs without one: submission over implicit TLS (RFC 8314). */
export const SMTPS_DEFAULT_PORT = 465;
/** Time to open a TCP connection, in milliseconds. */
export const SMTP_CONNECTION_TIMEOUT_MS = 30_000;
/** Time from connecting to the server's greeting (and for a STARTTLS upgrade), in milliseconds. */
export const SMTP_GREETING_TIMEOUT_MS = 30_000;
/** Longest silence from the server in a session, in milliseconds. */
export const SMTP_SOCKET_TIMEOUT_MS = 60_000;
/** Largest CA file read, in bytes. */
export const MAX_CA_FILE_BYTES = 1024 * 1024;

/** Mail settings as the operator gives them (stack configuration); all optional. */
export interface MailSettings {
  /**
   * `smtp://[user:password@]host[:port]` (STARTTLS, port 587) or `smtps://...` (implicit TLS,
   * port 465). Unset: messages go to the outbox folder.
   */
  readonly smtpUrl?: string | undefined;
  /** The `From:` mailbox; required with SMTP; default {@link DEFAULT_OUTBOX_FROM} for the outbox. */
  readonly mailFrom?: string | undefined;
  /** Outbox folder, relative to the project directory; default {@link DEFAULT_OUTBOX_DIR}. */
  readonly outboxDir?: string | undefined;
  /** Messages per second over SMTP; default {@link DEFAULT_SEND_RATE_PER_SECOND}. */
  readonly sendRatePerSecond?: number | undefined;
  /** Allow `smtp://` to a non-loopback host without STARTTLS; default false. */
  readonly allowInsecureSmtp?: boolean | undefined;
  /** Message template file (see `loadTemplate`), relative to the project directory (`keystone-totp:mailTemplate`). */
  readonly templateFile?: string | undefined;
  /** PEM file of CA certificates to trust for the SMTP server, besides the system's. */
  readonly smtpCaFile?: string | undefined;
}

/** Settings both kinds share. */
interface MailConfigBase {
  /** The `From:` mailbox as given, checked to be one address. */
  readonly from: string;
  /** The bare sender address, e.g. `noreply@example.com`. */
  readonly fromAddress: string;
  /** The message template, already read and checked. Non-enumerable, to keep printed configs short. */
  readonly template: Template;
  /** The template's absolute path, or undefined for the default. */
  readonly templateFile: string | undefined;
}

/** User name and password for SMTP AUTH, from the URL. */
export interface SmtpAuth {
  readonly user: string;
  readonly pass: string;
}

/** Send through an SMTP relay, with a pool of connections and a rate limit. */
export interface SmtpMailConfig extends MailConfigBase {
  readonly kind: "smtp";
  /** The URL as given, password included. Non-enumerable: never print it; see {@link displayUrl}. */
  readonly url: string;
  /** The URL without the password, e.g. `smtp://relay@mail.example.com:587`. */
  readonly displayUrl: string;
  /** Host name or IP address, lower case, without IPv6 brackets. */
  readonly host: string;
  readonly port: number;
  /** Implicit TLS from the first byte (`smtps://`). */
  readonly secure: boolean;
  /** STARTTLS is required: a server that does not offer it, or fails it, is refused. */
  readonly requireTls: boolean;
  /** The host is loopback (127.0.0.0/8, ::1, localhost), where plain SMTP is allowed. */
  readonly loopback: boolean;
  /** Login from the URL, if any. Non-enumerable, like {@link url}. */
  readonly auth: SmtpAuth | undefined;
  /** Absolute path of the extra CA file, if any. */
  readonly caFile: string | undefined;
  /** The extra CA certificates (PEM), if any. */
  readonly caPem: string | undefined;
  readonly pool: true;
  readonly maxConnections: number;
  readonly maxMessagesPerConnection: number;
  /** Messages per second asked for. */
  readonly sendRatePerSecond: number;
  /** At most {@link rateLimit} messages start in each window of {@link rateDeltaMs}. */
  readonly rateLimit: number;
  readonly rateDeltaMs: number;
  readonly connectionTimeoutMs: number;
  readonly greetingTimeoutMs: number;
  readonly socketTimeoutMs: number;
}

/** Write each message as an `.eml` file into a folder. */
export interface OutboxMailConfig extends MailConfigBase {
  readonly kind: "outbox";
  /** Absolute path of the folder. */
  readonly dir: string;
}

/** Normalised mail settings. */
export type MailConfig = SmtpMailConfig | OutboxMailConfig;

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** Whether a host is loopback: `localhost` (RFC 6761), 127.0.0.0/8, `::1` or IPv4-mapped 127/8. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  const family = net.isIP(h);
  if (family === 0) return false;
  return LOOPBACK.check(h, family === 4 ? "ipv4" : "ipv6");
}

function optionalString(key: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new ConfigError(`${key} must be a string`);
  const v = value.trim();
  return v.length === 0 ? undefined : v;
}

function readCa(path: string): string {
  const key = MAIL_CONFIG_KEYS.smtpCaFile;
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? "error";
    throw new ConfigError(`${key}: cannot read ${path} (${code})`, { cause });
  }
  if (pem.length > MAX_CA_FILE_BYTES || !pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new ConfigError(`${key}: ${path} is not a PEM file of CA certificates ("-----BEGIN CERTIFICATE-----")`);
  }
  return pem;
}

function resolveFrom(raw: string | undefined, smtp: boolean): { from: string; fromAddress: string } {
  const key = MAIL_CONFIG_KEYS.mailFrom;
  const value = optionalString(key, raw);
  if (value === undefined && smtp) {
    throw new ConfigError(
      `${key} is required when ${MAIL_CONFIG_KEYS.smtpUrl} is set: the address users see messages from and ` +
        'the relay lets this account send as, e.g. "ACME Cloud <noreply@example.com>"',
    );
  }
  const from = value ?? DEFAULT_OUTBOX_FROM;
  const box = parseMailbox(from);
  if (box === undefined) {
    throw new ConfigError(`${key} must be one email address, e.g. "ACME Cloud <noreply@example.com>"`);
  }
  return { from, fromAddress: box.address };
}

/** Turns sendRatePerSecond into nodemailer's window: `limit` messages per `deltaMs`. */
function rateWindow(rate: number): { rateLimit: number; rateDeltaMs: number } {
  const rateLimit = Math.max(1, Math.floor(rate));
  return { rateLimit, rateDeltaMs: Math.round((rateLimit * 1000) / rate) };
}

/** The SMTP config without the template; `url` and `auth` are added as non-enumerable fields. */
function resolveSmtp(
  rawUrl: string,
  settings: MailSettings,
  projectDir: string,
  base: Omit<MailConfigBase, "template">,
): Omit<SmtpMailConfig, "template"> {
  const key = MAIL_CONFIG_KEYS.smtpUrl;
  const form = "expected smtp://[user:password@]host[:port] or smtps://[user:password@]host[:port]";
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    // The value may hold a password: say what is wrong without repeating it.
    throw new ConfigError(`${key} is not a valid URL (${form})`);
  }
  const scheme = url.protocol.replace(/:$/, "").toLowerCase();
  if (scheme !== "smtp" && scheme !== "smtps") {
    throw new ConfigError(`${key} has scheme "${scheme.slice(0, 20)}:", ${form}`);
  }
  const hostRaw = url.hostname.toLowerCase();
  const host = hostRaw.replace(/^\[(.*)\]$/, "$1");
  if (host.length === 0) throw new ConfigError(`${key} has no host (${form})`);
  if ((url.pathname !== "" && url.pathname !== "/") || url.search !== "" || url.hash !== "") {
    throw new ConfigError(`${key} must not have a path, query or fragment (${form})`);
  }
  const secure = scheme === "smtps";
  const port = url.port === "" ? (secure ? SMTPS_DEFAULT_PORT : SMTP_DEFAULT_PORT) : Number(url.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`${key} has an invalid port`);

  let auth: SmtpAuth | undefined;
  try {
    const user = decodeURIComponent(url.username);
    const pass = decodeURIComponent(url.password);
    if (user !== "" && pass === "") throw new ConfigError(`${key} has a user name but no password`);
    if (user === "" && pass !== "") throw new ConfigError(`${key} has a password but no user name`);
    auth = user === "" ? undefined : { user, pass };
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause;
    throw new ConfigError(`${key}: the user name or password is not valid percent-encoding`);
  }
  const hostForUrl = net.isIPv6(host) ? `[${host}]` : host;
  const displayUrl = `${scheme}://${auth ? `${encodeURIComponent(auth.user)}@` : ""}${hostForUrl}:${port}`;

  const insecure = settings.allowInsecureSmtp ?? false;
  if (typeof insecure !== "boolean")
    throw new ConfigError(`${MAIL_CONFIG_KEYS.allowInsecureSmtp} must be true or false`);
  const loopback = isLoopbackHost(host);

  const rateKey = MAIL_CONFIG_KEYS.sendRatePerSecond;
  const rate = settings.sendRatePerSecond ?? DEFAULT_SEND_RATE_PER_SECOND;
  if (typeof rate !== "number" || !Number.isFinite(rate) || rate <= 0 || rate > MAX_SEND_RATE_PER_SECOND) {
    throw new ConfigError(`${rateKey} must be a number above 0 and at most ${MAX_SEND_RATE_PER_SECOND}`);
  }

  const caSetting = optionalString(MAIL_CONFIG_KEYS.smtpCaFile, settings.smtpCaFile);
  const caFile = caSetting === undefined ? undefined : resolve(projectDir, caSetting);
  const caPem = caFile === undefined ? undefined : readCa(caFile);

  const config = {
    kind: "smtp" as const,
    ...base,
    displayUrl,
    host,
    port,
    secure,
    // Loopback never leaves the machine; anything else needs TLS unless the operator opted out.
    requireTls: !secure && !loopback && !insecure,
    loopback,
    caFile,
    caPem,
    pool: true as const,
    maxConnections: SMTP_MAX_CONNECTIONS,
    maxMessagesPerConnection: SMTP_MAX_MESSAGES_PER_CONNECTION,
    sendRatePerSecond: rate,
    ...rateWindow(rate),
    connectionTimeoutMs: SMTP_CONNECTION_TIMEOUT_MS,
    greetingTimeoutMs: SMTP_GREETING_TIMEOUT_MS,
    socketTimeoutMs: SMTP_SOCKET_TIMEOUT_MS,
  };
  Object.defineProperties(config, {
    url: { value: rawUrl, enumerable: false },
    auth: { value: auth, enumerable: false },
  });
  return config as typeof config & Pick<SmtpMailConfig, "url" | "auth">;
}

/**
 * Normalises mail settings.
 *
 * With `smtpUrl` the result is `kind: "smtp"`: `smtps://` uses implicit TLS; `smtp://` requires
 * STARTTLS, except to a loopback host (127.0.0.0/8, ::1, localhost), or when `allowInsecureSmtp`
 * is true. TLS certificates are always verified, against the system's CAs plus `smtpCaFile`.
 * Pool: {@link SMTP_MAX_CONNECTIONS} connections, {@link SMTP_MAX_MESSAGES_PER_CONNECTION}
 * messages each, `sendRatePerSecond` (default {@link DEFAULT_SEND_RATE_PER_SECOND}).
 * Without it the result is `kind: "outbox"` writing to `outboxDir` (default
 * {@link DEFAULT_OUTBOX_DIR}). Relative paths are resolved against `projectDir`.
 *
 * @param raw - the settings as given.
 * @param projectDir - the directory relative paths are resolved against.
 * @throws {ConfigError} `E_CONFIG` naming the setting (e.g. `keystone-totp:smtpUrl`) if a value is
 *   invalid, `mailFrom` is missing with SMTP, both `smtpUrl` and `outboxDir` are set, or a file
 *   cannot be read. Messages never contain the SMTP password or the URL.
 */
export function resolveMailConfig(raw: MailSettings, projectDir: string): MailConfig {
  const smtpUrl = optionalString(MAIL_CONFIG_KEYS.smtpUrl, raw.smtpUrl);
  const outboxDir = optionalString(MAIL_CONFIG_KEYS.outboxDir, raw.outboxDir);
  if (smtpUrl !== undefined && outboxDir !== undefined) {
    throw new ConfigError(
      `${MAIL_CONFIG_KEYS.smtpUrl} and ${MAIL_CONFIG_KEYS.outboxDir} are both set: set one, to send ` +
        "through the SMTP relay or to write messages into the folder",
    );
  }
  const templateSetting = optionalString(MAIL_CONFIG_KEYS.templateFile, raw.templateFile);
  const templateFile = templateSetting === undefined ? undefined : resolve(projectDir, templateSetting);
  const base = { ...resolveFrom(raw.mailFrom, smtpUrl !== undefined), templateFile };
  const template = templateFile === undefined ? defaultTemplate() : loadTemplate(templateFile);
  const config =
    smtpUrl !== undefined
      ? resolveSmtp(smtpUrl, raw, projectDir, base)
      : { kind: "outbox" as const, ...base, dir: resolve(projectDir, outboxDir ?? DEFAULT_OUTBOX_DIR) };
  Object.defineProperty(config, "template", { value: template, enumerable: false });
  return Object.freeze(config) as MailConfig;
}
