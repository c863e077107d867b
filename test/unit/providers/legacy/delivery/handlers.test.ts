import { describe, expect, it } from "vitest";
import { resolveMailConfig } from "../../../../../lib/mail/config.ts";
import type { ComposedMessage } from "../../../../../lib/mail/message.ts";
import type { Mailer } from "../../../../../lib/mail/send.ts";
import { fingerprint } from "../../../../../lib/totp/secret.ts";
import {
  check,
  create,
  type DeliveryContext,
  diff,
  update,
} from "../../../../../providers/legacy/delivery/handlers.ts";
import type { TotpDeliveryOutputs } from "../../../../../providers/legacy/delivery/types.ts";
import { fakeKeystone } from "../../../../support/fake-keystone.ts";

const olds = {
  userKey: "alice@Default",
  email: "alice@example.com",
  displayName: "Alice",
  issuer: "ACME",
  account: "alice@Default",
  credentialId: "c1",
  fingerprint: "sha256:1111",
  deliveredTo: "alice@example.com",
  __provider: "old",
};
const news = { ...olds, secret: "S", otpauthUri: "U", __provider: "new" };

describe("delivery diff", () => {
  it("asks for no new message and no update when only the provider's code changed", async () => {
    // What the engine hands diff: the record create stored plus the provider it stored, and the
    // inputs as check returns them (the packed credential, as TotpDelivery passes it) plus the
    // provider of this run. A diff that compared the provider, or every key, would mail every
    // user again on each release.
    const sent: ComposedMessage[] = [];
    const mailer = {
      send: async (m: ComposedMessage) => {
        sent.push(m);
        return { messageId: m.messageId, accepted: [m.to.address], transport: "smtp" as const, at: "" };
      },
      close: () => {},
    } as unknown as Mailer;
    const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const args = {
      userKey: "alice@Default",
      username: "alice",
      domain: "Default",
      email: "alice@example.com",
      displayName: "Alice",
      issuer: "ACME",
      account: "alice@Default",
      credential: { id: "c1", fingerprint: fingerprint(secret), secret, reason: "new", retiring: [] },
    };
    const at = new Date("2027-01-01T00:00:00Z");
    const { outs } = await create(check(args).inputs as never, {
      mailer: () => mailer,
      mailConfig: () => resolveMailConfig({ outboxDir: "unused", mailFrom: "Ops <ops@example.com>" }, "/"),
      now: () => at,
    });
    expect(sent).toHaveLength(1);
    const stored = { ...outs, __provider: "provider as 0.1 serialised it" };
    const rerun = { ...check(args).inputs, __provider: "provider as this version serialises it" };
    expect(diff(stored, rerun, at)).toEqual({ changes: false, replaces: [], deleteBeforeReplace: false });
    // The same pair is not blind: a real input change beside the provider's still counts.
    expect(diff(stored, { ...rerun, resendTrigger: "1" }, at).replaces).toEqual(["resendTrigger"]);
    expect(diff(stored, { ...rerun, issuer: "ACME 2" }, at)).toEqual({
      changes: true,
      replaces: [],
      deleteBeforeReplace: false,
    });
  });

  it("sends a new message for a new secret, credential, address or resend trigger", () => {
    expect(diff(olds, { ...news, fingerprint: "sha256:2222" }).replaces).toEqual(["fingerprint"]);
    expect(diff(olds, { ...news, credentialId: "c2" }).replaces).toEqual(["credentialId"]);
    expect(diff(olds, { ...news, email: "new@example.com" }).replaces).toEqual(["email"]);
    expect(diff(olds, { ...news, resendTrigger: "x" }).replaces).toEqual(["resendTrigger"]);
  });

  it("records label changes without sending", () => {
    for (const change of [
      { issuer: "Other" },
      { displayName: "Al" },
      { account: "al" },
      { email: "ALICE@example.com" },
    ]) {
      const d = diff(olds, { ...news, ...change });
      expect(d.changes).toBe(true);
      expect(d.replaces).toEqual([]);
    }
  });
});

describe("delivery check", () => {
  it("refuses a bad address", () => {
    expect(check({ email: "not an address" }).failures[0]?.property).toBe("email");
    expect(check({ email: " bob@example.org " })).toEqual({ inputs: { email: "bob@example.org" }, failures: [] });
  });
});

describe("packed credential input", () => {
  it("spreads into the flat view and rebuilds the same URI the credential made", async () => {
    const { flatInputs } = await import("../../../../../providers/legacy/delivery/handlers.ts");
    const { otpauthUri } = await import("../../../../../lib/totp/uri.ts");
    const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const flat = flatInputs({
      ...olds,
      issuer: "ACME Cloud",
      account: "zoë@Default",
      credential: { id: "c9", fingerprint: "sha256:9", secret, reason: "rotation", retiring: ["c1"] },
    });
    expect(flat).toMatchObject({
      credentialId: "c9",
      fingerprint: "sha256:9",
      secret,
      reason: "rotation",
      retiring: ["c1"],
    });
    expect(flat.otpauthUri).toBe(otpauthUri({ issuer: "ACME Cloud", account: "zoë@Default", secret }));
  });

  it("a packed credential not yet known (preview) counts as a new message", () => {
    expect(diff(olds, { ...news, credential: "04da6b54-80e4-46f7-96ec-b56ff0331ba9" }).replaces).toContain(
      "credential",
    );
    const known = { id: "c1", fingerprint: "sha256:1111", secret: "S", reason: "new", retiring: [] };
    expect(diff(olds, { ...olds, credential: known })).toEqual({
      changes: false,
      replaces: [],
      deleteBeforeReplace: false,
    });
  });
});

const HOUR = 3_600_000;
const T0 = Date.parse("2027-01-01T00:00:00Z");

describe("the 0.1 delivery retires old credentials after the grace window", () => {
  const delivered = new Date(T0).toISOString();
  const olds = {
    userKey: "alice@Default",
    email: "a@example.com",
    issuer: "ACME",
    account: "alice",
    credentialId: "new1",
    fingerprint: "sha256:1",
    deliveredTo: "a@example.com",
    deliveredAt: delivered,
    transport: "smtp",
    messageId: "<m>",
    reason: "rotation",
    retiring: ["old1"],
    graceHours: 24,
  } as TotpDeliveryOutputs;
  const news = { ...olds, secret: "S", otpauthUri: "U", graceHours: 24 } as never;

  it("diff asks for an update only once the window has passed", () => {
    expect(diff(olds as never, news, new Date(T0 + 23 * HOUR)).changes).toBe(false);
    expect(diff(olds as never, news, new Date(T0 + 24 * HOUR))).toEqual({
      changes: true,
      replaces: [],
      deleteBeforeReplace: false,
    });
  });

  function dctx(ks: ReturnType<typeof fakeKeystone>, t: number): DeliveryContext {
    return {
      keystone: () => ks.client,
      now: () => new Date(t),
      mailer: () => {
        throw new Error("no mail expected");
      },
      mailConfig: () => {
        throw new Error("no mail expected");
      },
    };
  }

  it("update deletes the retiring credentials past the window, never the current one, and sends nothing", async () => {
    const ks = fakeKeystone({ u1: ["old1", "new1"] });
    const early = await update("id", olds, news, dctx(ks, T0 + HOUR));
    expect(early.outs.retiring).toEqual(["old1"]);
    expect(ks.deleted).toEqual([]);
    const late = await update("id", { ...olds, retiring: ["old1", "new1"] }, news, dctx(ks, T0 + 25 * HOUR));
    expect(ks.deleted).toEqual(["old1"]);
    expect(late.outs.retiring).toEqual([]);
    expect(late.outs.retiredAt).toBe(new Date(T0 + 25 * HOUR).toISOString());
  });

  it("a failed delete stays pending for the next run instead of failing the delivered message", async () => {
    const ks = fakeKeystone({ u1: ["old1", "new1"] });
    ks.failDeletes(true);
    const r = await update("id", olds, news, dctx(ks, T0 + 25 * HOUR));
    expect(r.outs.retiring).toEqual(["old1"]);
    expect(r.outs.retiredAt).toBeUndefined();
  });
});
