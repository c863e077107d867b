/**
 * The credential handlers on a Keystone that never returns TOTP blobs (30, 2026.2, and later):
 * nothing the tool needs after a create may come from reading a secret back. Against the
 * in-process double with blobs hidden; the real Keystone 30 runs the compatibility suite
 * (scripts/test.sh, docs/releases.md).
 */
import { describe, expect, it } from "vitest";
import { credentialTag, ownerId } from "../../../../lib/ownership.ts";
import { fingerprint, generateSecret } from "../../../../lib/totp/secret.ts";
import { create, type HandlerContext, read, update } from "../../../../providers/credential/handlers.ts";
import type { TotpCredentialOutputs } from "../../../../providers/credential/types.ts";
import { fakeKeystone } from "../../../support/fake-keystone.ts";

const T0 = Date.parse("2027-01-01T00:00:00Z");
const DAY = 86_400_000;
const base = { userId: "u1", userChecked: true, issuer: "ACME", account: "alice@Default", stack: "p/s" };
const OWNER = ownerId("p/s", "credential", "u1");

function ctxAt(ks: ReturnType<typeof fakeKeystone>, t: number): HandlerContext {
  return { client: () => ks.client, now: () => new Date(t) };
}

describe("no secret read back (Keystone returns no TOTP blobs)", () => {
  it("refresh keeps the recorded secret, fingerprint and rotatedAt instead of an empty secret", async () => {
    const ks = fakeKeystone({}, { returnsBlobs: false });
    const c = await create(base, { ...ctxAt(ks, T0), existing: async () => [] });
    const outs = c.outs as TotpCredentialOutputs;
    const r = await read(c.id, outs, ctxAt(ks, T0 + 3 * DAY));
    expect(r.id).toBe(c.id);
    expect(r.props?.secret).toBe(outs.secret);
    expect(r.props?.fingerprint).toBe(fingerprint(outs.secret));
    expect(r.props?.fingerprint).not.toBe(fingerprint(""));
    expect(r.props?.rotatedAt).toBe(outs.rotatedAt);
    expect(r.props?.otpauthUri).toBe(outs.otpauthUri);
  });

  it("where blobs are returned, a secret changed outside Pulumi still reads as drift", async () => {
    const ks = fakeKeystone();
    const c = await create(base, { ...ctxAt(ks, T0), existing: async () => [] });
    await ks.client.updateCredentialBlob(c.id, generateSecret());
    const r = await read(c.id, c.outs as TotpCredentialOutputs, ctxAt(ks, T0 + DAY));
    expect(r.props?.secret).not.toBe((c.outs as TotpCredentialOutputs).secret);
    expect(r.props?.rotatedAt).toBe(new Date(T0 + DAY).toISOString());
  });

  it("a crash leftover of its own whose secret cannot be read is retired, not adopted; the new secret is Keystone's", async () => {
    const ks = fakeKeystone({}, { returnsBlobs: false });
    const lost = generateSecret();
    ks.put({ id: "left", userId: "u1", blob: lost, marker: credentialTag(OWNER, new Date(T0 - DAY)) });
    const c = await create(base, { ...ctxAt(ks, T0), existing: async () => ks.held("u1") });
    const outs = c.outs as TotpCredentialOutputs;
    expect(outs.credentialId).not.toBe("left");
    expect(outs.secret).not.toBe(lost);
    // What the user is sent is what Keystone checks logins against.
    expect(ks.secretOf(outs.credentialId)).toBe(outs.secret);
    expect(outs.retiring).toEqual(["left"]);
    expect(ks.deleted).toEqual([]); // kept valid until the new secret has been delivered
  });

  it("a rotation whose answer was lost leaves a leftover that the next rotation retires, not adopts", async () => {
    const ks = fakeKeystone({}, { returnsBlobs: false });
    const c = await create({ ...base, rotationDays: 30 }, { ...ctxAt(ks, T0), existing: async () => [] });
    const olds = c.outs as TotpCredentialOutputs;
    ks.put({
      id: "lost-rotation",
      userId: "u1",
      blob: generateSecret(),
      marker: credentialTag(OWNER, new Date(T0 + DAY)),
    });
    const u = await update(c.id, olds, { ...base, rotationDays: 30 }, ctxAt(ks, T0 + 31 * DAY));
    expect(u.outs.credentialId).not.toBe("lost-rotation");
    expect(ks.secretOf(u.outs.credentialId)).toBe(u.outs.secret);
    expect([...(u.outs.retiring ?? [])].sort()).toEqual([olds.credentialId, "lost-rotation"].sort());
  });
});

describe("the operator's own account", () => {
  it("is refused by name before anything is written (rules or credential)", async () => {
    const ks = fakeKeystone();
    const err = (await create({ ...base, userId: "operator-id" }, { ...ctxAt(ks, T0), existing: async () => [] }).catch(
      (e: unknown) => e,
    )) as Error;
    expect(err.message).toMatch(/E_OPERATOR_SELF.*logs in with/s);
    expect(ks.writes).toEqual([]);
    expect(ks.ids("operator-id")).toEqual([]);
  });
});
