/**
 * The outbox: each message written as an RFC 5322 `.eml` file into a private folder, for an
 * operator to send on by other means or for a user to be handed in person.
 *
 * The files hold TOTP secrets, so the folder is 0700 and each file 0600 from its creation, and a
 * file appears under its final name only once complete (written to a temporary name, flushed,
 * then renamed). File names carry no secret: time, recipient and a short fingerprint.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { SendMailOptions } from "nodemailer";
import MailComposer from "nodemailer/lib/mail-composer";
import { MailError } from "../errors.ts";
import { type ComposedMessage, FINGERPRINT_HEADER } from "./message.ts";

/** Mode of the outbox folder: its files hold secrets. */
export const OUTBOX_DIR_MODE = 0o700;
/** Mode of each message file. */
export const OUTBOX_FILE_MODE = 0o600;
/** Characters of the recipient kept in a file name. */
export const MAX_RECIPIENT_NAME_CHARS = 64;
/** Hex digits of the fingerprint kept in a file name: enough to tell keys apart by eye. */
export const FINGERPRINT_NAME_CHARS = 8;
/** File name extension; mail clients open `.eml` files. */
export const OUTBOX_EXTENSION = ".eml";

/** A message written to the outbox. */
export interface OutboxWriteResult {
  /** Absolute path of the `.eml` file. */
  readonly path: string;
  /** The message's Message-ID, with angle brackets. */
  readonly messageId: string;
  /** Size of the file in bytes. */
  readonly bytes: number;
}

/**
 * Builds the raw RFC 5322 message (MIME multipart, with the QR code as an inline PNG) with
 * nodemailer's MailComposer, exactly as the SMTP transport would send it.
 *
 * @returns the message's bytes, CRLF line ends. They hold the secret: never log them.
 */
export async function buildRawMessage(msg: ComposedMessage): Promise<Buffer> {
  return new MailComposer(toNodemailerMessage(msg)).compile().build();
}

/**
 * The message as nodemailer takes it (for `sendMail` and `MailComposer` alike): fresh mutable
 * copies, and only the message's own buffers: nothing may be read from disk or the network.
 */
export function toNodemailerMessage(msg: ComposedMessage): SendMailOptions {
  return {
    ...msg,
    from: { ...msg.from },
    to: { ...msg.to },
    headers: { ...msg.headers },
    attachments: msg.attachments.map((a) => ({ ...a })),
    disableFileAccess: true,
    disableUrlAccess: true,
  };
}

/** Names in the outbox that this process is writing, so that two messages never share one. */
const reserved = new Set<string>();

/**
 * The file name for a message: `<UTC time>-<recipient>-<fingerprint prefix>.eml`, e.g.
 * `2026-11-27T23-25-01.123Z-alice_example.com-1f2e3d4c.eml`. Only `[A-Za-z0-9._-]` are used,
 * so the name is safe on any file system and in a shell.
 */
export function outboxFileName(msg: ComposedMessage, at: Date): string {
  const time = at.toISOString().replace(/:/g, "-");
  const recipient =
    msg.to.address
      .toLowerCase()
      .replace(/@/g, "_")
      .replace(/[^a-z0-9._-]+/g, "-")
      .slice(0, MAX_RECIPIENT_NAME_CHARS) || "recipient";
  const fp = (msg.headers[FINGERPRINT_HEADER] ?? "")
    .replace(/^[a-z0-9]+:/i, "")
    .replace(/[^A-Za-z0-9]/g, "")
    .slice(0, FINGERPRINT_NAME_CHARS);
  return `${time}-${recipient}${fp ? `-${fp}` : ""}${OUTBOX_EXTENSION}`;
}

/**
 * Creates the outbox folder with mode {@link OUTBOX_DIR_MODE}, or sets an existing one to it.
 *
 * @throws the file system's error (callers wrap it).
 */
export async function ensureOutboxDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: OUTBOX_DIR_MODE });
  const s = await stat(dir);
  if (!s.isDirectory()) {
    throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
  }
  // mkdir's mode is filtered by the umask and ignored for a folder that already existed.
  if ((s.mode & 0o777) !== OUTBOX_DIR_MODE) await chmod(dir, OUTBOX_DIR_MODE);
}

/** Picks a free name, adding `-1`, `-2`, ... before the extension if needed. */
async function freeName(dir: string, name: string): Promise<string> {
  const stem = name.slice(0, -OUTBOX_EXTENSION.length);
  for (let n = 0; ; n++) {
    const candidate = n === 0 ? name : `${stem}-${n}${OUTBOX_EXTENSION}`;
    const path = join(dir, candidate);
    if (reserved.has(path)) continue;
    // Reserved before the await, so that a concurrent write in this process skips it.
    reserved.add(path);
    const exists = await stat(path).then(
      () => true,
      () => false,
    );
    if (!exists) return path;
    reserved.delete(path);
  }
}

/**
 * Writes a message into the outbox folder as an `.eml` file (see {@link outboxFileName}).
 *
 * The folder is created with mode {@link OUTBOX_DIR_MODE} (an existing one is set to it), the
 * file with {@link OUTBOX_FILE_MODE}; the file is written under a temporary name, flushed to
 * disk and renamed, so a reader never sees a partial message.
 *
 * @param dir - the outbox folder (absolute, see `resolveMailConfig`).
 * @param msg - the message.
 * @param at - the time in the file name; default now.
 * @throws {MailError} `E_OUTBOX` naming the folder and the recipient if anything cannot be
 *   created or written; nothing is left under the final name.
 */
export async function writeToOutbox(
  dir: string,
  msg: ComposedMessage,
  at: Date = new Date(),
): Promise<OutboxWriteResult> {
  const raw = await buildRawMessage(msg);
  let path: string | undefined;
  let tmp: string | undefined;
  try {
    await ensureOutboxDir(dir);
    path = await freeName(dir, outboxFileName(msg, at));
    tmp = join(dir, `.${randomBytes(6).toString("hex")}.tmp`);
    const fh = await open(tmp, "wx", OUTBOX_FILE_MODE);
    try {
      await fh.writeFile(raw);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    tmp = undefined;
    return { path, messageId: msg.messageId, bytes: raw.length };
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? "error";
    throw new MailError(
      "E_OUTBOX",
      `could not write the message for ${msg.to.address} into the outbox ${dir} (${code}): ` +
        "check that the folder is writable by this user and the disk is not full, or set keystone-totp:outboxDir",
      { recipient: msg.to.address },
      { cause },
    );
  } finally {
    if (tmp !== undefined) await rm(tmp, { force: true }).catch(() => undefined);
    if (path !== undefined) reserved.delete(path);
  }
}
