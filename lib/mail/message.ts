/**
 * The enrollment message: what a user receives to add their TOTP key to an authenticator app.
 *
 * It has a plain-text and an HTML part made from a {@link Template}, and the QR code as an
 * inline PNG referenced by Content-ID. The message necessarily carries the secret (in the QR
 * code, the `otpauth://` link and the grouped key), so it is never logged; its headers carry
 * only a non-secret fingerprint.
 *
 * Every value from outside (names, labels, addresses) is reduced to one line of printable text
 * before use, so none can add a header line, and is HTML-escaped in the HTML part.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import addressparser from "nodemailer/lib/addressparser";
import { ConfigError, InputError } from "../errors.ts";
import { qrPng } from "../qr.ts";
import { groupSecret, normaliseSecret } from "../totp/secret.ts";
import { parseOtpauthUri, validateLabel } from "../totp/uri.ts";

/** The template used when the operator names none (see {@link loadTemplate} for its format). */
export const DEFAULT_TEMPLATE_FILE = fileURLToPath(new URL("./templates/enrollment.template", import.meta.url));
/** File name of the QR code attachment. */
export const QR_FILENAME = "totp-qr.png";
/** Header carrying the key's fingerprint, so a delivered message can be matched to state. */
export const FINGERPRINT_HEADER = "X-Keystone-TOTP-Fingerprint";
/** Longest fingerprint accepted, in characters; `sha256:` and 16 hex digits is 23. */
export const MAX_FINGERPRINT_CHARS = 100;
/** Longest name or user name accepted, in characters, after reduction to one line. */
export const MAX_NAME_CHARS = 256;
/** Byte offset of the width in a PNG: 8-byte signature, IHDR length and type, then width. */
const PNG_WIDTH_OFFSET = 16;
/** Largest template file read, in bytes; the default is about 6 KB. */
export const MAX_TEMPLATE_BYTES = 256 * 1024;

/** Why the user is sent a key. */
export type EnrollmentReason = "new" | "rotation";

/**
 * What a password login needs once the message has reached the user, for the template's
 * blocks: `staged` (the password alone still works; a code alone never does) or `enforced`
 * (password + code). See {@link EnrollmentMessageInput.enforced}.
 */
export type LoginStage = "staged" | "enforced";

/** What the enrollment message is made from. All values are checked by {@link composeEnrollment}. */
export interface EnrollmentMessageInput {
  /** The recipient's email address (one bare address, e.g. `alice@example.com`). */
  readonly to: string;
  /** The recipient's name for the greeting and the `To:` header; default the user name. */
  readonly displayName?: string | undefined;
  /** The Keystone user name. */
  readonly username: string;
  /** The user's Keystone domain name. */
  readonly domain: string;
  /** The issuer the app shows; must equal the URI's. */
  readonly issuer: string;
  /** The account label the app shows; must equal the URI's. */
  readonly account: string;
  /** The base32 secret; must equal the URI's. Shown in groups of four for typing. */
  readonly secret: string;
  /** The `otpauth://totp/` URI put in the QR code and the link. */
  readonly otpauthUri: string;
  /** A non-secret fingerprint of the secret (see `fingerprint` in totp/secret.ts). */
  readonly fingerprint: string;
  /** `new` for a first enrollment, `rotation` when the key replaces an older one. */
  readonly reason: EnrollmentReason;
  /**
   * Whether the stack requires password + TOTP for this user once this message is delivered
   * (keystone-totp:enforceMfa). Selects the template's `{{#enforced}}` blocks, else its
   * `{{#staged}}` ones, so the message says what holds for the user. Default false.
   */
  readonly enforced?: boolean | undefined;
  /** The `From:` address, e.g. `ACME Cloud <noreply@example.com>`. */
  readonly from: string;
}

/** A parsed mailbox. */
export interface MailAddress {
  /** Display name; empty when there is none. */
  readonly name: string;
  /** The bare address, `local@domain`. */
  readonly address: string;
}

/** The QR code attachment, shown inline by Content-ID. */
export interface QrAttachment {
  readonly filename: typeof QR_FILENAME;
  readonly content: Buffer;
  /** Content-ID without angle brackets; the HTML refers to it as `cid:<cid>`. */
  readonly cid: string;
  readonly contentType: "image/png";
  readonly contentDisposition: "inline";
}

/**
 * A composed message, in the shape nodemailer's `sendMail` and `MailComposer` take. It holds
 * the secret: never log it.
 */
export interface ComposedMessage {
  readonly from: MailAddress;
  readonly to: MailAddress;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  readonly attachments: readonly [QrAttachment];
  /** Extra headers: `Auto-Submitted`, `X-Auto-Response-Suppress` and {@link FINGERPRINT_HEADER}. */
  readonly headers: Readonly<Record<string, string>>;
  /** `<uuid@sender-domain>`, so that both transports report the same ID. */
  readonly messageId: string;
}

/** A parsed message template (see {@link loadTemplate}). */
export interface Template {
  /** Where it was read from, for error messages. */
  readonly file: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

/** The placeholders a template may use, documented in {@link loadTemplate}. */
export const TEMPLATE_PLACEHOLDERS = [
  "displayName",
  "username",
  "domain",
  "issuer",
  "account",
  "groupedKey",
  "otpauthUri",
  "qrCid",
  "qrSizePx",
  "fingerprint",
  "recipient",
  "fromAddress",
] as const;

/** One of {@link TEMPLATE_PLACEHOLDERS}. */
export type Placeholder = (typeof TEMPLATE_PLACEHOLDERS)[number];

type SectionName = "subject" | "text" | "html";

/** Without these the message is useless: no key to type, or no QR code to scan. */
const REQUIRED_PLACEHOLDERS: Readonly<Record<SectionName, readonly Placeholder[]>> = {
  subject: [],
  text: ["groupedKey"],
  html: ["qrCid", "groupedKey"],
};
const SECTION_NAMES: readonly SectionName[] = ["subject", "text", "html"];
const REASONS: readonly EnrollmentReason[] = ["new", "rotation"];
const STAGES: readonly LoginStage[] = ["staged", "enforced"];
const SECTION_LINE = /^--- *([A-Za-z]+) *---[ \t]*$/;
const TAG = /\{\{([^{}]*)\}\}/g;
const BLOCK = /\{\{#(new|rotation|staged|enforced)\}\}([\s\S]*?)\{\{\/\1\}\}/g;
/** C0 and C1 controls, line and paragraph separators, and bidi overrides that disguise text. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we remove.
const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]+/g;
const HTML_ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes `& < > " '` so that text is inert in HTML content and quoted attributes. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

/** Reduces a value to one line of printable text: control characters become a space. */
export function oneLine(value: string): string {
  return value.replace(UNSAFE_CHARS, " ").replace(/\s+/g, " ").trim();
}

/**
 * Parses one mailbox such as `alice@example.com` or `"ACME, Cloud" <noreply@example.com>`.
 *
 * @returns the mailbox, or undefined if the value is not exactly one plausible address or holds
 *   a line break.
 */
export function parseMailbox(value: string): MailAddress | undefined {
  if (typeof value !== "string" || /[\r\n]/.test(value)) return undefined;
  const parsed = addressparser(value.trim());
  const [first] = parsed;
  if (parsed.length !== 1 || first === undefined || first.group !== undefined) return undefined;
  const address = first.address.trim();
  if (!/^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+$/.test(address)) return undefined;
  if (address.length > 254) return undefined;
  return { name: oneLine(first.name), address };
}

function fail(file: string, message: string): never {
  throw new ConfigError(`mail template ${file}: ${message}`);
}

/** A section with only the blocks of this reason and stage kept (their tags removed). */
function keepBlocks(section: string, reason: EnrollmentReason, stage: LoginStage): string {
  return section.replace(BLOCK, (_m, flag: string, inner: string) => (flag === reason || flag === stage ? inner : ""));
}

/** Checks one section's tags; the message names the file, the section and the tag. */
function checkSection(file: string, name: SectionName, body: string): void {
  const known = new Set<string>(TEMPLATE_PLACEHOLDERS);
  const withoutBlocks = body.replace(BLOCK, (_m, _flag: string, inner: string) => inner);
  for (const m of withoutBlocks.matchAll(TAG)) {
    const tag = (m[1] ?? "").trim();
    if (/^[#/](new|rotation|staged|enforced)$/.test(tag)) {
      fail(file, `section ${name}: {{${tag}}} has no matching block end or start, or blocks are nested`);
    }
    if (!known.has(tag)) {
      fail(file, `section ${name}: unknown placeholder {{${tag}}}; known: ${TEMPLATE_PLACEHOLDERS.join(", ")}`);
    }
  }
  if (withoutBlocks.replace(TAG, "").includes("{{")) {
    fail(file, `section ${name}: a "{{" is not closed by "}}"`);
  }
  const has = (text: string, tag: Placeholder): boolean => new RegExp(`\\{\\{\\s*${tag}\\s*\\}\\}`).test(text);
  for (const required of REQUIRED_PLACEHOLDERS[name]) {
    if (!has(body, required)) fail(file, `section ${name} must contain {{${required}}}`);
    for (const reason of REASONS) {
      for (const stage of STAGES) {
        // A placeholder only inside another reason's or stage's block would be missing here.
        if (!has(keepBlocks(body, reason, stage), required)) {
          fail(
            file,
            `section ${name} must contain {{${required}}} in ${reason} ${stage} messages too, not only in a block`,
          );
        }
      }
    }
  }
}

/**
 * Parses template text (see {@link loadTemplate} for the format).
 *
 * @param source - the template's text.
 * @param file - where it came from, named in errors.
 * @throws {ConfigError} `E_CONFIG` naming `file` if a section is missing, repeated or unknown,
 *   a placeholder is unknown or a required one missing, or a block is unbalanced.
 */
export function parseTemplate(source: string, file: string): Template {
  const sections = new Map<SectionName, string[]>();
  let current: string[] | undefined;
  for (const line of source.replace(/^\uFEFF/, "").split(/\r\n|\r|\n/)) {
    const marker = SECTION_LINE.exec(line);
    if (marker) {
      const name = (marker[1] ?? "").toLowerCase();
      if (!SECTION_NAMES.includes(name as SectionName)) {
        fail(file, `unknown section "--- ${name} ---"; the sections are subject, text and html`);
      }
      if (sections.has(name as SectionName)) fail(file, `section ${name} appears twice`);
      current = [];
      sections.set(name as SectionName, current);
    } else {
      // Lines before the first section are the file's own comments.
      current?.push(line);
    }
  }
  const body = (name: SectionName): string => {
    const lines = sections.get(name);
    if (lines === undefined) fail(file, `section "--- ${name} ---" is missing`);
    const text = lines
      .join("\n")
      .replace(/^\s*\n/, "")
      .trimEnd();
    if (text.trim().length === 0) fail(file, `section ${name} is empty`);
    checkSection(file, name, text);
    return text;
  };
  const subject = body("subject");
  if (subject.includes("\n")) fail(file, "section subject must be a single line");
  return { file, subject, text: `${body("text")}\n`, html: `${body("html")}\n` };
}

/**
 * Reads a message template from a file.
 *
 * The format is plain text in three sections, each starting with its own line
 * `--- subject ---`, `--- text ---` or `--- html ---` and present exactly once; lines before the
 * first section are comments. The subject is one line. Sections hold placeholders
 * `{{name}}`, replaced by one-line values (HTML-escaped in the html section, never expanded
 * again):
 *
 * - `displayName` - the user's display name, or the user name when there is none
 * - `username`, `domain` - the Keystone user name and its domain
 * - `issuer`, `account` - the labels the authenticator app shows
 * - `groupedKey` - the key in groups of four, for typing (required in text and html)
 * - `otpauthUri` - the `otpauth://totp/` link that opens the app on a phone
 * - `qrCid` - the QR image's Content-ID, for `<img src="cid:{{qrCid}}">` (required in html)
 * - `qrSizePx` - the QR image's side in pixels
 * - `fingerprint` - the key's non-secret fingerprint
 * - `recipient`, `fromAddress` - the bare recipient and sender addresses
 *
 * Blocks `{{#new}}...{{/new}}` and `{{#rotation}}...{{/rotation}}` are kept only for that
 * {@link EnrollmentReason}; `{{#staged}}...{{/staged}}` and `{{#enforced}}...{{/enforced}}` only
 * for that {@link LoginStage} (enforced when the message's `enforced` is true). Blocks do not
 * nest. The default is {@link DEFAULT_TEMPLATE_FILE}.
 *
 * @param path - the file; used as given in error messages.
 * @throws {ConfigError} `E_CONFIG` naming the file if it cannot be read, is larger than
 *   {@link MAX_TEMPLATE_BYTES}, or is invalid (see {@link parseTemplate}).
 */
export function loadTemplate(path: string): Template {
  let source: Buffer;
  try {
    source = readFileSync(path);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? "error";
    throw new ConfigError(`cannot read mail template ${path} (${code}): check keystone-totp:mailTemplate`, { cause });
  }
  if (source.length > MAX_TEMPLATE_BYTES) {
    fail(path, `the file is larger than ${MAX_TEMPLATE_BYTES} bytes`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(source);
  } catch (cause) {
    throw new ConfigError(`mail template ${path}: the file is not UTF-8 text`, { cause });
  }
  return parseTemplate(text, path);
}

let defaultTemplateCache: Template | undefined;

/** The default template, {@link DEFAULT_TEMPLATE_FILE}, read once. */
export function defaultTemplate(): Template {
  defaultTemplateCache ??= loadTemplate(DEFAULT_TEMPLATE_FILE);
  return defaultTemplateCache;
}

/** Fills a section: keeps the reason's and stage's blocks, then substitutes every tag in one pass. */
function render(
  section: string,
  reason: EnrollmentReason,
  stage: LoginStage,
  values: Readonly<Record<Placeholder, string>>,
  html: boolean,
): string {
  return keepBlocks(section, reason, stage).replace(TAG, (_m, tag: string) => {
    const value = values[tag.trim() as Placeholder] ?? "";
    return html ? escapeHtml(value) : value;
  });
}

function requiredLine(property: string, value: unknown): string {
  const v = typeof value === "string" ? oneLine(value) : "";
  if (v.length === 0) throw new InputError(property, `${property} must not be empty`);
  if ([...v].length > MAX_NAME_CHARS) {
    throw new InputError(property, `${property} is longer than ${MAX_NAME_CHARS} characters`);
  }
  return v;
}

/**
 * Composes the enrollment message for one user.
 *
 * @param input - who, which key, and why; see {@link EnrollmentMessageInput}.
 * @param template - default {@link defaultTemplate}.
 * @returns a message for nodemailer, with a fresh Message-ID and QR Content-ID.
 * @throws {InputError} `E_INPUT` if an address is invalid, a required value empty, the URI is
 *   not an `otpauth://totp/` URI for the same issuer, account and secret, or the fingerprint
 *   looks like it holds the secret. Messages never contain the secret.
 * @throws {SecretError} `E_SECRET` if the secret is not canonical base32 (see `normaliseSecret`).
 */
export async function composeEnrollment(
  input: EnrollmentMessageInput,
  template: Template = defaultTemplate(),
): Promise<ComposedMessage> {
  const to = parseMailbox(input.to);
  if (to === undefined) throw new InputError("to", "to must be one email address, like alice@example.com");
  const from = parseMailbox(input.from);
  if (from === undefined) {
    throw new InputError("from", 'from must be one email address, like "ACME Cloud <noreply@example.com>"');
  }
  if (input.reason !== "new" && input.reason !== "rotation") {
    throw new InputError("reason", 'reason must be "new" or "rotation"');
  }
  if (input.enforced !== undefined && typeof input.enforced !== "boolean") {
    throw new InputError("enforced", "enforced must be true or false");
  }
  const stage: LoginStage = input.enforced === true ? "enforced" : "staged";
  const username = requiredLine("username", input.username);
  const domain = requiredLine("domain", input.domain);
  const displayName = input.displayName === undefined ? "" : oneLine(String(input.displayName));
  if ([...displayName].length > MAX_NAME_CHARS) {
    throw new InputError("displayName", `displayName is longer than ${MAX_NAME_CHARS} characters`);
  }
  const issuer = validateLabel("issuer", input.issuer);
  const account = validateLabel("account", input.account);
  const secret = normaliseSecret(input.secret);

  const uri = typeof input.otpauthUri === "string" ? input.otpauthUri.trim() : "";
  const parsed = parseOtpauthUri(uri);
  // The QR code, the link and the typed key must all add the same entry to the app.
  if (parsed.secret !== secret) throw new InputError("otpauthUri", "otpauthUri does not carry the given secret");
  if (parsed.issuer !== issuer || parsed.account !== account) {
    throw new InputError("otpauthUri", "otpauthUri does not carry the given issuer and account");
  }

  const fp = typeof input.fingerprint === "string" ? input.fingerprint.trim() : "";
  if (!/^[\x21-\x7e]+$/.test(fp) || fp.length > MAX_FINGERPRINT_CHARS) {
    throw new InputError("fingerprint", `fingerprint must be 1 to ${MAX_FINGERPRINT_CHARS} printable ASCII characters`);
  }
  if (fp.toUpperCase().includes(secret)) {
    throw new InputError("fingerprint", "fingerprint contains the secret; pass fingerprint(secret) instead");
  }

  const qrCid = `totp-qr.${randomUUID()}@keystone-totp`;
  const content = await qrPng(uri);
  const values: Record<Placeholder, string> = {
    displayName: displayName || username,
    username,
    domain,
    issuer,
    account,
    groupedKey: groupSecret(secret),
    otpauthUri: uri,
    qrCid,
    // The PNG's width, from its IHDR chunk: cheaper than building the symbol again.
    qrSizePx: String(content.readUInt32BE(PNG_WIDTH_OFFSET)),
    fingerprint: fp,
    recipient: to.address,
    fromAddress: from.address,
  };
  const senderDomain = from.address.slice(from.address.lastIndexOf("@") + 1);
  return {
    from,
    to: { name: displayName, address: to.address },
    subject: oneLine(render(template.subject, input.reason, stage, values, false)),
    text: render(template.text, input.reason, stage, values, false),
    html: render(template.html, input.reason, stage, values, true),
    attachments: [
      { filename: QR_FILENAME, content, cid: qrCid, contentType: "image/png", contentDisposition: "inline" },
    ],
    headers: {
      "Auto-Submitted": "auto-generated",
      // Out-of-office replies would go back to an unattended sender.
      "X-Auto-Response-Suppress": "All",
      [FINGERPRINT_HEADER]: fp,
    },
    messageId: `<${randomUUID()}@${senderDomain}>`,
  };
}
