/**
 * The ownership marker (lib/ownership.ts): the credential tag and the decision, before a
 * resource creates a credential, whether one its user already holds is its own leftover to
 * adopt. The real Keystone's side (tags stored and listed; a hard stop with creates in flight)
 * is in test/e2e/faults-keystone-stop.test.ts.
 */
import { describe, expect, it } from "vitest";
import { markerOf, postureMarker } from "../../../lib/mfa/posture.ts";
import { credentialTag, MARKER_ATTRIBUTE, ownerId, planAdoption, readMarker, tagOf } from "../../../lib/ownership.ts";
import { generateSecret } from "../../../lib/totp/secret.ts";

const OWNER = ownerId("keystone-totp/dev", "enrollment", "alice@Default");
const usable = (b: string) => /^[A-Z2-7]{26,}$/.test(b);
const S1 = generateSecret();
const S2 = generateSecret();
const S3 = generateSecret();

function cred(id: string, blob: string, owner?: string, at = "2027-01-01T00:00:00.000Z") {
  return { id, blob, ...(owner === undefined ? {} : { marker: { v: 1, owner, at } }) };
}

describe("the marker and the tag", () => {
  it("one attribute and one version for users' rules and credentials", () => {
    expect(MARKER_ATTRIBUTE).toBe("keystone_totp");
    const m = postureMarker({ enabled: null, rules: null });
    expect(readMarker(m)).toEqual(m);
    expect(markerOf(m)).toEqual(m);
    expect(readMarker({ v: 2, owner: OWNER })).toBeUndefined();
    expect(readMarker([1])).toBeUndefined();
    expect(readMarker("keystone_totp")).toBeUndefined();
  });

  it("a tag names its owner and time; a posture marker is not a tag", () => {
    const t = credentialTag(OWNER, new Date("2027-01-02T03:04:05Z"));
    expect(t).toEqual({ v: 1, owner: OWNER, at: "2027-01-02T03:04:05.000Z" });
    expect(tagOf(JSON.parse(JSON.stringify(t)))).toEqual(t);
    expect(tagOf(postureMarker({ enabled: null, rules: null }))).toBeUndefined();
    expect(tagOf({ v: 1, owner: "" })).toBeUndefined();
    expect(tagOf({ v: 1, owner: OWNER, at: "not a time" })).toEqual({ v: 1, owner: OWNER, at: "" });
  });

  it("owners differ by stack, by kind and by user key; no stack is '-'", () => {
    const all = [
      ownerId("p/dev", "enrollment", "alice@Default"),
      ownerId("p/prod", "enrollment", "alice@Default"),
      ownerId("p/dev", "credential", "alice@Default"),
      ownerId("p/dev", "enrollment", "ALICE@Default"),
      ownerId(undefined, "enrollment", "alice@Default"),
    ];
    expect(new Set(all).size).toBe(all.length);
    expect(ownerId("", "credential", "u1")).toBe("-/credential/u1");
  });
});

describe("planAdoption: what a resource about to create a credential does with what the user holds", () => {
  it("nothing held: nothing to adopt", () => {
    expect(planAdoption([], OWNER, new Set(), usable)).toEqual({
      adopt: undefined,
      leftovers: [],
      referenced: [],
      foreign: [],
    });
  });

  it("adopts its own leftover that the state does not reference", () => {
    const mine = cred("c1", S1, OWNER);
    const p = planAdoption([mine], OWNER, new Set(), usable);
    expect(p.adopt).toBe(mine);
    expect(p.leftovers).toEqual([]);
  });

  it("never adopts a hand-enrolled (untagged) credential: the unmanaged policy applies", () => {
    const p = planAdoption([cred("h1", S1)], OWNER, new Set(), usable);
    expect(p.adopt).toBeUndefined();
    expect(p.foreign).toEqual(["h1"]);
    expect(p.leftovers).toEqual([]);
  });

  it("never adopts another owner's: another stack, another kind, a renamed resource of the same user", () => {
    const held = [
      cred("o1", S1, ownerId("keystone-totp/prod", "enrollment", "alice@Default")),
      cred("o2", S2, ownerId("keystone-totp/dev", "credential", "alice@Default")),
      cred("o3", S3, ownerId("keystone-totp/dev", "enrollment", "Alice@Default")),
    ];
    const p = planAdoption(held, OWNER, new Set(), usable);
    expect(p.adopt).toBeUndefined();
    expect(p.foreign).toEqual(["o1", "o2", "o3"]);
  });

  it("never adopts what the state references (the current credential, retiring ones)", () => {
    const held = [cred("cur", S1, OWNER), cred("old", S2, OWNER)];
    const p = planAdoption(held, OWNER, new Set(["cur", "old"]), usable);
    expect(p.adopt).toBeUndefined();
    expect(p.referenced).toEqual(["cur", "old"]);
    expect(p.leftovers).toEqual([]);
  });

  it("several leftovers: adopts the newest, the others are leftovers to retire", () => {
    const held = [
      cred("a", S1, OWNER, "2027-01-01T00:00:00.000Z"),
      cred("b", S2, OWNER, "2027-01-03T00:00:00.000Z"),
      cred("c", S3, OWNER, "2027-01-02T00:00:00.000Z"),
      cred("h", S1),
    ];
    const p = planAdoption(held, OWNER, new Set(), usable);
    expect(p.adopt?.id).toBe("b");
    expect([...p.leftovers].sort()).toEqual(["a", "c"]);
    expect(p.foreign).toEqual(["h"]);
    // The same choice whatever the order Keystone lists them in.
    expect(planAdoption([...held].reverse(), OWNER, new Set(), usable).adopt?.id).toBe("b");
  });

  it("same time: the choice is still stable (by ID)", () => {
    const held = [cred("x1", S1, OWNER), cred("x2", S2, OWNER)];
    expect(planAdoption(held, OWNER, new Set(), usable).adopt?.id).toBe(
      planAdoption([...held].reverse(), OWNER, new Set(), usable).adopt?.id,
    );
  });

  it("a leftover whose blob is not a usable secret is retired, not adopted", () => {
    const p = planAdoption([cred("bad", "NOT-BASE32!!", OWNER)], OWNER, new Set(), usable);
    expect(p.adopt).toBeUndefined();
    expect(p.leftovers).toEqual(["bad"]);
  });

  it("with a supplied secret only a leftover holding that secret is adopted", () => {
    const held = [cred("other", S2, OWNER, "2027-02-01T00:00:00.000Z"), cred("same", S1, OWNER)];
    const p = planAdoption(held, OWNER, new Set(), usable, S1);
    expect(p.adopt?.id).toBe("same");
    expect(p.leftovers).toEqual(["other"]);
    expect(planAdoption([held[0] as (typeof held)[0]], OWNER, new Set(), usable, S1).adopt).toBeUndefined();
  });
});
