/**
 * The one retirement rule both rotating resources use (providers/shared/retirement.ts): when
 * a retiring credential may be deleted, and what a failed deletion does under each policy.
 */
import { describe, expect, it } from "vitest";
import { EngineBoundaryError, KeystoneTotpError } from "../../../../lib/errors.ts";
import { errorRecord, MAX_ERROR_CHARS } from "../../../../providers/shared/error-record.ts";
import {
  carriedFailure,
  DEFAULT_GRACE_HOURS,
  retire,
  retireAfter,
  retireDue,
} from "../../../../providers/shared/retirement.ts";
import { fakeKeystone } from "../../../support/fake-keystone.ts";

const HOUR = 3_600_000;
const T0 = Date.parse("2027-01-01T00:00:00Z");
const since = new Date(T0).toISOString();

describe("retireAfter", () => {
  it("is the start of the window (delivery or rotation) + grace; nothing pending means nothing to do", () => {
    expect(retireAfter(["old1"], since, 24)?.toISOString()).toBe(new Date(T0 + 24 * HOUR).toISOString());
    expect(retireAfter(["old1"], since, 0)?.getTime()).toBe(T0);
    expect(retireAfter([], since, 24)).toBeUndefined();
    expect(retireAfter(undefined, since, 24)).toBeUndefined();
    expect(retireAfter(["old1"], undefined, 24)).toBeUndefined();
  });

  it("an absent or invalid grace window is the default", () => {
    for (const g of [undefined, null, -1, Number.NaN, "12"]) {
      expect(retireAfter(["old1"], since, g)?.getTime()).toBe(T0 + DEFAULT_GRACE_HOURS * HOUR);
    }
  });

  it("retireDue: from the end of the window on", () => {
    expect(retireDue(["old1"], since, 1, new Date(T0 + HOUR - 1))).toBe(false);
    expect(retireDue(["old1"], since, 1, new Date(T0 + HOUR))).toBe(true);
    expect(retireDue([], since, 1, new Date(T0 + HOUR))).toBe(false);
  });
});

describe("retire", () => {
  const at = new Date(T0);

  it("deletes every retiring credential but the current one", async () => {
    const ks = fakeKeystone({ u1: ["old1", "old2", "new1"] });
    const r = await retire(["old1", "new1", "old2"], "new1", { keystone: () => ks.client, now: () => at });
    expect(r).toEqual({ left: [] });
    expect(ks.deleted).toEqual(["old1", "old2"]);
  });

  it("records a failure by default: the credentials stay retiring, the error without its code in front", async () => {
    const ks = fakeKeystone({ u1: ["old1", "new1"] });
    ks.failDeletes(true);
    const r = await retire(["old1"], "new1", { keystone: () => ks.client, now: () => at });
    expect(r.left).toEqual(["old1"]);
    expect(r.failure).toMatchObject({ ids: ["old1"], at: at.toISOString(), code: "E_KEYSTONE_HTTP" });
    expect(r.failure?.error).not.toMatch(/^\[E_/);
  });

  it("throws the first failure with onFailure 'throw', trying nothing after it", async () => {
    const ks = fakeKeystone({ u1: ["old1", "old2", "new1"] });
    ks.failDeletes(true);
    const ctx = { keystone: () => ks.client, now: () => at };
    await expect(retire(["old1", "old2"], "new1", ctx, { onFailure: "throw" })).rejects.toThrow(KeystoneTotpError);
    expect(ks.deleted).toEqual([]);
  });

  it("a failure carried over names only the credentials still retiring", () => {
    const old = { ids: ["old1", "old2"], at: since, error: "x" };
    expect(carriedFailure(old, ["old2"])).toEqual({ ...old, ids: ["old2"] });
    expect(carriedFailure(old, [])).toBeUndefined();
  });
});

describe("errorRecord", () => {
  it("keeps the code apart and at most MAX_ERROR_CHARS of the message", () => {
    const long = new KeystoneTotpError("E_KEYSTONE_HTTP", "x".repeat(2 * MAX_ERROR_CHARS));
    expect(errorRecord(long)).toEqual({ code: "E_KEYSTONE_HTTP", error: "x".repeat(MAX_ERROR_CHARS) });
    // On its way across the engine, its message carries the code: the record keeps them apart.
    expect(errorRecord(new EngineBoundaryError(long))).toEqual({
      code: "E_KEYSTONE_HTTP",
      error: "x".repeat(MAX_ERROR_CHARS),
    });
    expect(errorRecord(new Error("plain"))).toEqual({ error: "plain" });
    expect(errorRecord(new Error("sent"), "E_SMTP_UNCONFIRMED")).toEqual({ code: "E_SMTP_UNCONFIRMED", error: "sent" });
  });
});
