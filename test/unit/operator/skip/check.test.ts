/**
 * The no-op skip's decision and the state verdict it records, on plain data: which changes make
 * a stack run, that a resource with work pending is never followed by a skip, and that the due
 * time the providers give is exactly where their own diff starts to change.
 */
import { describe, expect, it } from "vitest";
import { decide, lastUpdateOf, recordAfterRun } from "../../../../operator/skip/check.ts";
import { runFingerprint } from "../../../../operator/skip/fingerprint.ts";
import type { SkipRecord } from "../../../../operator/skip/record.ts";
import { stateVerdict } from "../../../../operator/skip/state.ts";
import * as credential from "../../../../providers/credential/handlers.ts";
import * as enrollment from "../../../../providers/enrollment/handlers.ts";

const T0 = new Date("2026-12-01T00:00:00Z");
const DAY = 86_400_000;
const at = (ms: number) => new Date(T0.getTime() + ms);
const info = { lastUpdate: "2026-12-01T00:00:01Z", updateInProgress: false };
/** The exported state's manifest, as the run that wrote it left it. */
const manifest = { time: info.lastUpdate };
const record: SkipRecord = {
  version: 1,
  stack: "s",
  fingerprint: "f1",
  lastUpdate: info.lastUpdate,
  dueAt: at(30 * DAY).toISOString(),
  recordedAt: T0.toISOString(),
};

/** An enrollment as the state holds it right after a delivery (rotation every 30 days). */
function enrollmentState(extra: Record<string, unknown> = {}) {
  const inputs = {
    __provider: "exports.handler = require('keystone-totp-runtime/enrollment.cjs')",
    userId: "u1",
    username: "alice",
    domain: "Default",
    email: "alice@example.com",
    issuer: "ACME",
    account: "alice@Default",
    rotationDays: 30,
  };
  const outputs = {
    ...inputs,
    credentialId: "c1",
    secret: { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", ciphertext: "x" },
    fingerprint: "sha256:aa",
    createdAt: T0.toISOString(),
    rotatedAt: T0.toISOString(),
    deliveredAt: T0.toISOString(),
    retiring: [],
    mfa: { posture: "protected" },
    ...extra,
  };
  return {
    urn: "urn:pulumi:s::keystone-totp::pulumi-nodejs:dynamic/keystone-totp:TotpEnrollment::alice@Default",
    type: "pulumi-nodejs:dynamic/keystone-totp:TotpEnrollment",
    custom: true,
    inputs,
    outputs,
  };
}

describe("decide", () => {
  it("skips only with a matching record, the same last update, the same fingerprint and nothing due", () => {
    expect(decide(record, "f1", info, at(DAY))).toEqual({ skip: true, dueAt: record.dueAt });
    expect(decide(undefined, "f1", info, at(DAY)).skip).toBe(false);
    expect(decide(record, "f2", info, at(DAY))).toMatchObject({
      skip: false,
      reason: expect.stringMatching(/inputs changed/),
    });
    expect(decide(record, new Error("E_CSV_ROW users.csv:3"), info, at(DAY))).toMatchObject({
      skip: false,
      reason: expect.stringMatching(/could not be read/),
    });
    expect(decide(record, "f1", { ...info, lastUpdate: "2026-12-02T00:00:00Z" }, at(DAY))).toMatchObject({
      reason: expect.stringMatching(/another run/),
    });
    expect(decide(record, "f1", { ...info, updateInProgress: true }, at(DAY)).skip).toBe(false);
    expect(decide(record, "f1", undefined, at(DAY)).skip).toBe(false);
    expect(decide(record, "f1", info, at(30 * DAY))).toMatchObject({ reason: expect.stringMatching(/fell due/) });
  });
});

describe("lastUpdateOf", () => {
  it("gives the checkpoint's manifest time as `pulumi stack ls --json` prints it: UTC, to the millisecond", () => {
    // The manifest keeps Go's nanoseconds and the writer's zone; the listing prints UTC with
    // milliseconds, truncated (Go's formatting never rounds up).
    expect(lastUpdateOf({ manifest: { time: "2026-12-07T03:40:01.123956789+01:00" } })).toBe(
      "2026-12-07T02:40:01.123Z",
    );
    expect(lastUpdateOf({ manifest: { time: "2026-12-07T02:40:01Z" } })).toBe("2026-12-07T02:40:01.000Z");
  });

  it("has no time for a state without one: no record is then kept, so the next run runs", () => {
    for (const d of [
      undefined,
      null,
      "x",
      {},
      { manifest: {} },
      { manifest: { time: 5 } },
      { manifest: { time: "soon" } },
    ]) {
      expect(lastUpdateOf(d)).toBeUndefined();
    }
    expect(recordAfterRun("s", "f1", { resources: [] }, T0).record).toBeUndefined();
  });
});

describe("stateVerdict and recordAfterRun", () => {
  it("a delivered enrollment: nothing pending, due at its scheduled rotation", () => {
    const v = stateVerdict({ resources: [enrollmentState()] }, at(DAY));
    expect(v).toEqual({ pending: undefined, dueAt: at(30 * DAY) });
    const r = recordAfterRun("s", "f1", { manifest, resources: [enrollmentState()] }, at(DAY));
    expect(r.record?.dueAt).toBe(at(30 * DAY).toISOString());
    expect(r.record?.lastUpdate).toBe(new Date(info.lastUpdate).toISOString());
  });

  it("work pending leaves no record: unconfirmed delivery, earlier shape, open posture, unknown kind, killed run", () => {
    const cases = [
      { resources: [enrollmentState({ deliveryUnconfirmed: { at: "x", code: "E", error: "e", reason: "new" } })] },
      { resources: [enrollmentState({ deliveredAt: undefined })] },
      { resources: [enrollmentState({ mfa: { posture: "open" } })] },
      { resources: [{ ...enrollmentState(), inputs: { __provider: "require('x/other.cjs')" } }] },
      { resources: [enrollmentState()], pending_operations: [{ type: "creating" }] },
      { resources: "not a list" },
    ];
    for (const d of cases) {
      const r = recordAfterRun("s", "f1", { manifest, ...d }, at(DAY));
      expect(r.record, JSON.stringify(d).slice(0, 120)).toBeUndefined();
      expect(r.pending).toBeTruthy();
    }
  });

  it("retiring credentials: due at the end of the grace window after the delivery", () => {
    const s = enrollmentState({ retiring: ["old"], graceHours: 24 });
    expect(stateVerdict({ resources: [s] }, at(DAY / 2)).dueAt).toEqual(at(DAY));
    expect(stateVerdict({ resources: [s] }, at(DAY)).pending).toMatch(/pending/);
  });
});

describe("the providers' dueAt is where their diff starts to change", () => {
  const olds = {
    rotatedAt: T0.toISOString(),
    rotationDays: 7,
    retiring: ["old"],
    graceHours: 48,
    deliveredAt: T0.toISOString(),
    email: "a@x",

    mfa: { posture: "protected" },
  };
  const news = { rotationDays: 7, email: "a@x" };
  it("enrollment", () => {
    const due = enrollment.dueAt(olds, news) as Date;
    expect(due).toEqual(at(2 * DAY));
    expect(enrollment.diff(olds, news, new Date(due.getTime() - 1)).changes).toBe(false);
    expect(enrollment.diff(olds, news, due).changes).toBe(true);
  });
  it("credential on its own", () => {
    const o = { ...olds, retiring: [] };
    const due = credential.dueAt(o, news) as Date;
    expect(due).toEqual(at(7 * DAY));
    expect(credential.diff(o, news, new Date(due.getTime() - 1)).changes).toBe(false);
    expect(credential.diff(o, news, due).changes).toBe(true);
  });
});

describe("runFingerprint", () => {
  const row = {
    line: 2,
    username: "alice",
    email: "a@x",
    domain: "Default",
    userId: undefined,
    displayName: undefined,
    rotationDays: undefined,
    key: "alice@Default",
  };
  const user = { id: "u1", name: "alice", domainId: "default", email: undefined, enabled: true, options: {} };
  const base = {
    code: "c",
    config: "config: {}",
    environment: "e",
    users: [{ row, user }],
    authMethods: ["password", "totp"],
    operatorId: "op",
  };
  it("ignores row order and line numbers; any field the program reads changes it", () => {
    const f = runFingerprint(base);
    expect(runFingerprint({ ...base, users: [{ row: { ...row, line: 9 }, user }] })).toBe(f);
    expect(runFingerprint({ ...base, users: [{ row: { ...row, email: "b@x" }, user }] })).not.toBe(f);
    expect(runFingerprint({ ...base, users: [{ row, user: { ...user, options: { lock_password: true } } }] })).not.toBe(
      f,
    );
    expect(runFingerprint({ ...base, config: "config: {a: 1}" })).not.toBe(f);
    expect(runFingerprint({ ...base, code: "c2" })).not.toBe(f);
    expect(runFingerprint({ ...base, authMethods: ["password"] })).not.toBe(f);
    expect(f).toMatch(/^[0-9a-f]{64}$/);
    // The order Keystone lists options, rules and a rule's methods in does not count.
    const opts = (o: Record<string, unknown>) => ({ ...base, users: [{ row, user: { ...user, options: o } }] });
    expect(
      runFingerprint(
        opts({ lock_password: true, multi_factor_auth_rules: [["password", "totp"], ["application_credential"]] }),
      ),
    ).toBe(
      runFingerprint(
        opts({ multi_factor_auth_rules: [["application_credential"], ["totp", "password"]], lock_password: true }),
      ),
    );
    expect(runFingerprint(opts({ multi_factor_auth_rules: [["password", "totp"]] }))).not.toBe(
      runFingerprint(opts({ multi_factor_auth_rules: [["password"], ["totp"]] })),
    );
  });
});
