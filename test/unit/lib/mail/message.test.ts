import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressObject } from "mailparser";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, InputError } from "../../../../lib/errors.ts";
import {
  composeEnrollment,
  DEFAULT_TEMPLATE_FILE,
  defaultTemplate,
  escapeHtml,
  FINGERPRINT_HEADER,
  loadTemplate,
  QR_FILENAME,
} from "../../../../lib/mail/message.ts";
import { buildRawMessage } from "../../../../lib/mail/outbox.ts";
import { groupSecret } from "../../../../lib/totp/secret.ts";
import { decodeQrPng, enrollmentInput, parseMessage } from "../../../support/smtp.ts";

/** Asserts without printing the text, which holds a secret, when it fails. */
function expectIn(text: string, part: string): void {
  expect(text.includes(part), `expected the message to contain ${JSON.stringify(part)}`).toBe(true);
}

/** The negation of {@link expectIn}. */
function expectNotIn(text: string, part: string): void {
  expect(text.includes(part), `expected the message not to contain ${JSON.stringify(part)}`).toBe(false);
}

const dir = mkdtempSync(join(tmpdir(), "keystone-totp-template-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function templateFile(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  return (Array.isArray(a) ? a : a ? [a] : []).flatMap((o) => o.value.map((v) => v.address ?? ""));
}

describe("composeEnrollment", () => {
  it("has a text part with the grouped key, the link, the labels and the steps", async () => {
    const input = enrollmentInput();
    const msg = await composeEnrollment(input);
    expect(msg.subject).toBe("Set up two-factor login for ACME Cloud");
    expect(msg.text.includes(groupSecret(input.secret))).toBe(true);
    expect(msg.text.includes(input.otpauthUri)).toBe(true);
    for (const phrase of [
      "Hello Alice Example,",
      '"alice" (domain "Default")',
      "Set up account",
      "Scan a barcode",
      "Enter provided key",
      "Account name:  alice@Default",
      "Time based",
      '"ACME Cloud" and "alice@Default"',
      "If you did not expect this message, do not scan the code or enter the key",
      "contact your cloud administrators",
    ]) {
      expectIn(msg.text, phrase);
    }
    expectNotIn(msg.text, "{{");
    expectNotIn(msg.html, "{{");
  });

  it("shows the QR code inline: the attachment's Content-ID is the img src, and it decodes to the URI", async () => {
    const input = enrollmentInput();
    const msg = await composeEnrollment(input);
    const [qr] = msg.attachments;
    expect(qr).toMatchObject({ filename: QR_FILENAME, contentType: "image/png", contentDisposition: "inline" });
    expectIn(msg.html, `<img src="cid:${qr.cid}"`);
    expect(decodeQrPng(qr.content) === input.otpauthUri).toBe(true);
    // The link opens the app on a phone; & is escaped as HTML requires in an attribute.
    expectIn(msg.html, `<a href="${escapeHtml(input.otpauthUri)}"`);
    expect(msg.html.includes(groupSecret(input.secret))).toBe(true);
  });

  it("carries auto-generated and fingerprint headers, and no secret in any header", async () => {
    const input = enrollmentInput();
    const msg = await composeEnrollment(input);
    expect(msg.headers["Auto-Submitted"]).toBe("auto-generated");
    expect(msg.headers[FINGERPRINT_HEADER]).toBe(input.fingerprint);
    expect(msg.messageId).toMatch(/^<[0-9a-f-]{36}@example\.com>$/);
    const headerText = JSON.stringify([msg.headers, msg.subject, msg.from, msg.to, msg.messageId]);
    expect(headerText.includes(input.secret)).toBe(false);
    const raw = (await buildRawMessage(msg)).toString("latin1");
    const head = raw.slice(0, raw.indexOf("\r\n\r\n"));
    expect(head.includes(input.secret)).toBe(false);
  });

  it("HTML-escapes every user-controlled value", async () => {
    const input = enrollmentInput({
      displayName: `<script>alert("x")</script> O'Brien & Co`,
      username: "<b>bob</b>",
      domain: "R&D <dept>",
      issuer: "ACME <Cloud> & Co",
      account: `"bob"@<R&D>`,
    });
    const msg = await composeEnrollment(input);
    expectNotIn(msg.html, "<script>");
    expectNotIn(msg.html, "<b>bob");
    expectNotIn(msg.html, "<Cloud>");
    expectNotIn(msg.html, "<dept>");
    expectIn(msg.html, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; O&#39;Brien &amp; Co");
    expectIn(msg.html, "R&amp;D &lt;dept&gt;");
    expectIn(msg.html, "&quot;bob&quot;@&lt;R&amp;D&gt;");
    // The plain-text part shows them as written.
    expectIn(msg.text, `Hello <script>alert("x")</script> O'Brien & Co,`);
    const parsed = await parseMessage(await buildRawMessage(msg));
    expect(parsed.subject).toBe("Set up two-factor login for ACME <Cloud> & Co");
  });

  it("lets no CR or LF from the inputs reach the headers", async () => {
    const input = enrollmentInput({
      displayName: "Eve\r\nBcc: victim@evil.example\r\nX-Injected: 1",
      username: "eve\r\nSubject: pwned",
      to: "eve@example.com",
    });
    const file = templateFile(
      "subject-user.template",
      '--- subject ---\nHello {{username}} {{displayName}}\n--- text ---\n{{groupedKey}}\n--- html ---\n<img src="cid:{{qrCid}}">{{groupedKey}}\n',
    );
    const msg = await composeEnrollment(input, loadTemplate(file));
    expect(msg.subject).not.toMatch(/[\r\n]/);
    expect(msg.to.name).not.toMatch(/[\r\n]/);
    const raw = await buildRawMessage(msg);
    const parsed = await parseMessage(raw);
    expect(parsed.headers.has("bcc")).toBe(false);
    expect(parsed.headers.has("x-injected")).toBe(false);
    expect(parsed.headerLines.filter((h) => h.key === "subject")).toHaveLength(1);
    expect(addresses(parsed.to)).toEqual(["eve@example.com"]);
    expect(addresses(parsed.bcc)).toEqual([]);
    expect(parsed.subject).toBe("Hello eve Subject: pwned Eve Bcc: victim@evil.example X-Injected: 1");
  });

  it("refuses addresses that are not one mailbox, or hold a line break", async () => {
    for (const to of ["", "alice", "a@b.example, c@d.example", "alice@example.com\r\nBcc: x@y.example"]) {
      await expect(composeEnrollment(enrollmentInput({ to }))).rejects.toMatchObject({ property: "to" });
    }
    await expect(composeEnrollment(enrollmentInput({ from: "noreply\n@example.com" }))).rejects.toMatchObject({
      property: "from",
    });
  });

  it("refuses a URI that would add another entry than the one described", async () => {
    const other = enrollmentInput();
    await expect(composeEnrollment(enrollmentInput({ otpauthUri: other.otpauthUri }))).rejects.toMatchObject({
      property: "otpauthUri",
    });
    const wrongLabel = enrollmentInput({ issuer: "Other Cloud" });
    await expect(
      composeEnrollment({ ...wrongLabel, otpauthUri: enrollmentInput({ secret: wrongLabel.secret }).otpauthUri }),
    ).rejects.toMatchObject({ property: "otpauthUri" });
    await expect(composeEnrollment(enrollmentInput({ otpauthUri: "https://example.com/" }))).rejects.toBeInstanceOf(
      InputError,
    );
  });

  it("refuses a fingerprint that is the secret, without repeating it", async () => {
    const input = enrollmentInput();
    const err = await composeEnrollment({ ...input, fingerprint: input.secret }).catch((e: unknown) => e);
    expect(err).toMatchObject({ property: "fingerprint" });
    expect((err as Error).message.includes(input.secret)).toBe(false);
  });

  it("has another subject and intro for a rotation, asking to replace the old entry", async () => {
    const msg = await composeEnrollment(enrollmentInput({ reason: "rotation" }));
    expect(msg.subject).toBe("Your new two-factor login key for ACME Cloud");
    expectIn(msg.text, "replace the old entry");
    expectNotIn(msg.text, "has been set up");
    expectIn(msg.html, "replace the old entry");
    const fresh = await composeEnrollment(enrollmentInput());
    expectNotIn(fresh.text, "replace the old entry");
  });

  it("says, by default, that the password alone still works for now, and claims nothing about a code alone", async () => {
    for (const msg of [
      await composeEnrollment(enrollmentInput()),
      await composeEnrollment(enrollmentInput({ enforced: false })),
      await composeEnrollment(enrollmentInput({ reason: "rotation" })),
    ]) {
      for (const part of [msg.text, msg.html]) {
        expectIn(part, "For now your password alone still logs you in");
        expectIn(part, "You can already log in with your password and a 6-digit code");
        expectIn(part, "your administrators may later require the code at every login");
        // Keystone 30: a user with rules needs a code to change their own (expired) password.
        expectIn(part, "changing your own password asks for a code from the app");
        // Untrue where a stack sets allowTotpOnlyLogin: the message does not say it.
        expectNotIn(part, "code alone");
        expectNotIn(part, "From now on you log in with your password");
        expectNotIn(part, "needs the 6-digit code from the app as well");
      }
    }
  });

  it("says, when enforced, that the password needs the code once the message arrived, and app credentials keep working", async () => {
    for (const reason of ["new", "rotation"] as const) {
      const msg = await composeEnrollment(enrollmentInput({ reason, enforced: true }));
      for (const part of [msg.text, msg.html]) {
        expectIn(part, "Once this message has reached you, logging in with your password needs the 6-digit code");
        expectNotIn(part, "code alone");
        expectIn(part, "log in with an application credential keep working");
        expectNotIn(part, "password alone still logs you in");
        expectNotIn(part, "{{");
      }
    }
  });

  it("refuses an enforced that is not a boolean", async () => {
    const input = { ...enrollmentInput(), enforced: "yes" } as unknown as Parameters<typeof composeEnrollment>[0];
    await expect(composeEnrollment(input)).rejects.toMatchObject({ property: "enforced", code: "E_INPUT" });
  });

  it("uses a new Content-ID and Message-ID for every message", async () => {
    const input = enrollmentInput();
    const a = await composeEnrollment(input);
    const b = await composeEnrollment(input);
    expect(a.attachments[0].cid).not.toBe(b.attachments[0].cid);
    expect(a.messageId).not.toBe(b.messageId);
  });
});

describe("loadTemplate", () => {
  const good = [
    "comment lines are ignored {{nonsense}}",
    "--- subject ---",
    "{{#new}}Welcome{{/new}}{{#rotation}}New key{{/rotation}}, {{displayName}} ({{issuer}})",
    "--- text ---",
    "Key: {{groupedKey}}",
    "Link: {{otpauthUri}}",
    "--- html ---",
    '<p>{{displayName}}</p><img src="cid:{{qrCid}}" width="{{qrSizePx}}"><code>{{groupedKey}}</code>',
    "",
  ].join("\n");

  it("reads the default template", () => {
    expect(defaultTemplate().file).toBe(DEFAULT_TEMPLATE_FILE);
  });

  it("uses a custom template file, escaping only in html and never expanding values", async () => {
    const template = loadTemplate(templateFile("custom.template", good));
    const input = enrollmentInput({ displayName: "{{groupedKey}} <i>" });
    const msg = await composeEnrollment(input, template);
    expect(msg.subject).toBe("Welcome, {{groupedKey}} <i> (ACME Cloud)");
    expect(msg.text).toBe(`Key: ${groupSecret(input.secret)}\nLink: ${input.otpauthUri}\n`);
    expectIn(msg.html, "<p>{{groupedKey}} &lt;i&gt;</p>");
    expectIn(msg.html, `<img src="cid:${msg.attachments[0].cid}" width="`);
    const rotated = await composeEnrollment({ ...input, reason: "rotation" }, template);
    expect(rotated.subject).toBe("New key, {{groupedKey}} <i> (ACME Cloud)");
  });

  it("keeps only the {{#staged}} or only the {{#enforced}} blocks of a custom template", async () => {
    const staged = good.replace(
      "Link: {{otpauthUri}}",
      "{{#staged}}S-{{issuer}}{{/staged}}{{#enforced}}E-{{issuer}}{{/enforced}}",
    );
    const template = loadTemplate(templateFile("stages.template", staged));
    const input = enrollmentInput();
    expect((await composeEnrollment(input, template)).text).toBe(`Key: ${groupSecret(input.secret)}\nS-ACME Cloud\n`);
    expect((await composeEnrollment({ ...input, enforced: true }, template)).text).toBe(
      `Key: ${groupSecret(input.secret)}\nE-ACME Cloud\n`,
    );
  });

  it.each([
    ["html without {{qrCid}}", good.replace('<img src="cid:{{qrCid}}" width="{{qrSizePx}}">', ""), /qrCid/],
    ["text without {{groupedKey}}", good.replace("Key: {{groupedKey}}", "Key: see HTML"), /text.*groupedKey/],
    [
      "a required placeholder only in one reason's block",
      good.replace("Key: {{groupedKey}}", "{{#new}}Key: {{groupedKey}}{{/new}}"),
      /groupedKey.*rotation/,
    ],
    [
      "a required placeholder only in the staged block",
      good.replace("Key: {{groupedKey}}", "{{#staged}}Key: {{groupedKey}}{{/staged}}"),
      /groupedKey.*enforced/,
    ],
    ["an unbalanced staged block", good.replace("Key: {{groupedKey}}", "{{#staged}}Key: {{groupedKey}}"), /block/],
    ["an unknown placeholder", good.replace("{{issuer}}", "{{isuer}}"), /unknown placeholder \{\{isuer\}\}/],
    ["an unclosed tag", good.replace("{{otpauthUri}}", "{{otpauthUri}"), /not closed/],
    ["an unbalanced block", good.replace("{{/new}}", ""), /block/],
    ["a missing section", good.replace(/--- html ---[\s\S]*/, ""), /html.*missing/],
    ["a repeated section", `${good}--- text ---\n{{groupedKey}}\n`, /text appears twice/],
    ["an unknown section", `${good}--- footer ---\nx\n`, /unknown section/],
  ])("refuses a template with %s, naming the file", (_name, text, pattern) => {
    const file = templateFile("broken.template", text);
    try {
      loadTemplate(file);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).code).toBe("E_CONFIG");
      expect((e as Error).message).toContain(file);
      expect((e as Error).message).toMatch(pattern);
    }
  });

  it("refuses a file that cannot be read, naming it", () => {
    const file = join(dir, "missing.template");
    expect(() => loadTemplate(file)).toThrow(ConfigError);
    expect(() => loadTemplate(file)).toThrow(file);
  });
});
