import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MailError } from "../../../../lib/errors.ts";
import { resolveMailConfig } from "../../../../lib/mail/config.ts";
import { composeEnrollment } from "../../../../lib/mail/message.ts";
import { OUTBOX_DIR_MODE, OUTBOX_FILE_MODE, outboxFileName, writeToOutbox } from "../../../../lib/mail/outbox.ts";
import { createMailer } from "../../../../lib/mail/send.ts";
import { groupSecret } from "../../../../lib/totp/secret.ts";
import { decodeQrPng, enrollmentInput, parseMessage } from "../../../support/smtp.ts";

/** Asserts without printing the text, which holds a secret, when it fails. */
function expectIn(text: string, part: string): void {
  expect(text.includes(part), `expected the message to contain ${JSON.stringify(part)}`).toBe(true);
}

const root = mkdtempSync(join(tmpdir(), "keystone-totp-outbox-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const AT = new Date("2026-11-27T23:25:01.123Z");

describe("writeToOutbox", () => {
  it("creates the folder 0700 and a 0600 file, leaving no temporary file", async () => {
    const dir = join(root, "a", "outbox");
    const msg = await composeEnrollment(enrollmentInput());
    const result = await writeToOutbox(dir, msg, AT);
    expect(statSync(dir).mode & 0o777).toBe(OUTBOX_DIR_MODE);
    expect(statSync(result.path).mode & 0o777).toBe(OUTBOX_FILE_MODE);
    expect(readdirSync(dir)).toEqual([basename(result.path)]);
    expect(result.messageId).toBe(msg.messageId);
    expect(result.bytes).toBe(statSync(result.path).size);
  });

  it("tightens an existing folder that others could read", async () => {
    const dir = join(root, "open");
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    await writeToOutbox(dir, await composeEnrollment(enrollmentInput()), AT);
    expect(statSync(dir).mode & 0o777).toBe(OUTBOX_DIR_MODE);
  });

  it("names the file by time, recipient and fingerprint, never by the secret", async () => {
    const input = enrollmentInput({ to: "Bob.O'Brien+ops@Example.COM" });
    const msg = await composeEnrollment(input);
    const name = outboxFileName(msg, AT);
    const fp = input.fingerprint.replace("sha256:", "").slice(0, 8);
    expect(name).toBe(`2026-11-27T23-25-01.123Z-bob.o-brien-ops_example.com-${fp}.eml`);
    expect(name).toMatch(/^[A-Za-z0-9._-]+$/);
    for (const part of groupSecret(input.secret).split(" ")) expect(name.includes(part)).toBe(false);
  });

  it("never overwrites: two messages at the same moment get two files", async () => {
    const dir = join(root, "twice");
    const msg = await composeEnrollment(enrollmentInput());
    const [a, b] = await Promise.all([writeToOutbox(dir, msg, AT), writeToOutbox(dir, msg, AT)]);
    expect(a.path).not.toBe(b.path);
    expect(readdirSync(dir).sort()).toEqual([basename(a.path), basename(b.path)].sort());
  });

  it("writes a real RFC 5322 message with text, HTML and the inline QR PNG", async () => {
    const input = enrollmentInput({ displayName: "Zoë O'Brien & Co" });
    const msg = await composeEnrollment(input);
    const { path } = await writeToOutbox(join(root, "parse"), msg, AT);
    const raw = readFileSync(path);
    expect(raw.includes("\r\n")).toBe(true);
    const parsed = await parseMessage(raw);
    expect(parsed.messageId).toBe(msg.messageId);
    expect(parsed.subject).toBe("Set up two-factor login for ACME Cloud");
    expect(parsed.from?.value).toEqual([{ name: "ACME Cloud", address: "noreply@example.com" }]);
    expect(parsed.to).toMatchObject({ value: [{ name: "Zoë O'Brien & Co", address: "alice@example.com" }] });
    expect(parsed.headers.get("auto-submitted")).toBe("auto-generated");
    expect(parsed.headers.get("x-keystone-totp-fingerprint")).toBe(input.fingerprint);
    expect(parsed.text?.includes(groupSecret(input.secret))).toBe(true);
    const [png] = parsed.attachments;
    expect(parsed.attachments).toHaveLength(1);
    expect(png).toMatchObject({ contentType: "image/png", contentDisposition: "inline", filename: "totp-qr.png" });
    expect(png?.cid).toBe(msg.attachments[0].cid);
    expectIn(parsed.html || "", `src="cid:${msg.attachments[0].cid}"`);
    expect(decodeQrPng(png?.content ?? Buffer.alloc(0)) === input.otpauthUri).toBe(true);
  });

  it("fails with E_OUTBOX naming the folder and recipient when it cannot write", async () => {
    const blocker = join(root, "file");
    writeFileSync(blocker, "not a folder");
    const dir = join(blocker, "outbox");
    const err = await writeToOutbox(dir, await composeEnrollment(enrollmentInput()), AT).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MailError);
    expect(err).toMatchObject({ code: "E_OUTBOX", recipient: "alice@example.com" });
    expect((err as Error).message).toContain(dir);
    expect((err as Error).message).toContain("alice@example.com");
  });
});

describe("outbox mailer", () => {
  it("sends into the folder and reports the path", async () => {
    const config = resolveMailConfig({ outboxDir: "mailer" }, root);
    const mailer = createMailer(config, { now: () => AT });
    await mailer.verify();
    const msg = await composeEnrollment(enrollmentInput());
    const result = await mailer.send(msg);
    expect(result).toMatchObject({
      transport: "outbox",
      messageId: msg.messageId,
      accepted: ["alice@example.com"],
      at: AT.toISOString(),
    });
    expect(result.path?.startsWith(join(root, "mailer"))).toBe(true);
    expect(mailer.stats).toEqual({ messages: 1, failures: 0, connectionsOpened: 0 });
    mailer.close();
  });

  it("verify() fails with E_OUTBOX when the folder cannot be made", async () => {
    writeFileSync(join(root, "blocked"), "");
    const mailer = createMailer(resolveMailConfig({ outboxDir: "blocked/out" }, root));
    await expect(mailer.verify()).rejects.toMatchObject({ code: "E_OUTBOX" });
    await expect(mailer.send(await composeEnrollment(enrollmentInput()))).rejects.toMatchObject({ code: "E_OUTBOX" });
    expect(mailer.stats.failures).toBe(1);
  });
});
