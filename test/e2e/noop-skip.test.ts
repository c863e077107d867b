/**
 * The no-op skip of `provision up`, through the real engine, Keystone and SMTP server: a rerun
 * with nothing to do does not start the engine, writes nothing to Keystone and sends nothing;
 * a CSV change, a user changed in Keystone, a refresh, a rotation falling due and --force each
 * run it;
 * a run left with work pending (an unconfirmed delivery) is never followed by a skip.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultFleet, startFaultFleet } from "../support/fleet.ts";
import { updateUserOptions } from "../support/keystone-admin.ts";
import { acceptedWrites } from "../support/proxy.ts";

const SKIPPED = /nothing can change: skipped/;
/** What the engine prints when it ran (the summary line of every run). */
const ENGINE_RAN = /unchanged|created|updated/;

let f: FaultFleet;

beforeAll(async () => {
  f = await startFaultFleet({
    prefix: "e2e-noop-skip",
    people: ["skip0", "skip1"],
    env: { KEYSTONE_TOTP_SKIP_DOCTOR: "1", KEYSTONE_TOTP_NO_SKIP: "0" },
    config: { rotationDays: "30" },
  });
});

afterAll(async () => {
  await f?.close();
});

describe("provision up skips a stack where nothing can change", () => {
  it("a rerun is skipped: no engine, no write, no mail; a new CSV row runs it, for that user only", async () => {
    const first = await f.up();
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/runs: no record/);
    expect(f.smtp.received.length).toBe(2);

    const mark = f.proxy.exchanges().length;
    const again = await f.up();
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(SKIPPED);
    expect(again.stdout).not.toMatch(ENGINE_RAN);
    expect(acceptedWrites(f.proxy, mark)).toEqual([]);
    expect(f.smtp.received.length).toBe(2);

    f.people.push(await f.person("skip2"));
    f.writeCsv();
    const added = await f.up();
    expect(added.code, added.stderr).toBe(0);
    expect(added.stderr).toMatch(/runs: its inputs changed/);
    expect(f.smtp.received.length).toBe(3);
    expect(f.smtp.messagesFor(f.people[2]?.email ?? "").length).toBe(1);
    expect((await f.up()).stderr).toMatch(SKIPPED);
  });

  it("a user changed in Keystone (its options) runs the stack", async () => {
    const p = f.people[0];
    if (!p) throw new Error("no person");
    // An option that does not touch login: the fingerprint covers the whole user record.
    await updateUserOptions(f.admin, p.user.id, { lock_password: true });
    const r = await f.up();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/runs: its inputs changed/);
    await updateUserOptions(f.admin, p.user.id, { lock_password: null });
    expect((await f.up()).code).toBe(0);
    expect((await f.up()).stderr).toMatch(SKIPPED);
  });

  it("a refresh in between (it may have found credentials changed by hand) runs the next up", async () => {
    const refreshed = await f.stack.run(["refresh", "--yes"], { allowFail: true });
    f.output.push(refreshed.stdout, refreshed.stderr);
    expect(refreshed.code, refreshed.stderr).toBe(0);
    const r = await f.up();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/runs: another run changed it since/);
  });

  it("a rotation falling due runs it (the project's clock); --force runs the engine", async () => {
    const before = f.smtp.received.length;
    const later = new Date(Date.now() + 31 * 24 * 3_600_000).toISOString();
    const r = await f.stack.run(["up", "--yes", "--skip-preview"], {
      allowFail: true,
      env: { KEYSTONE_TOTP_NOW: later },
    });
    f.output.push(r.stdout, r.stderr);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/runs: a rotation or retirement fell due/);
    expect(f.smtp.received.length - before).toBe(f.people.length);

    const forced = await f.up(["--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stderr).toMatch(/--force/);
    expect(forced.stdout).toMatch(ENGINE_RAN);
  });

  it("a run that leaves a delivery unconfirmed is followed by a run, not a skip", async () => {
    const p = await f.person("skip3");
    f.people.push(p);
    f.writeCsv();
    f.smtp.rejectRecipient(p.email, 451);
    const r = await f.up(["--continue-on-error"]);
    expect(r.code).not.toBe(0);
    f.smtp.acceptRecipient(p.email);
    const next = await f.up();
    expect(next.stderr).not.toMatch(SKIPPED);
    expect(next.code, next.stderr).toBe(0);
    expect(f.smtp.messagesFor(p.email).length).toBeGreaterThanOrEqual(1);
  });

  it("no secret in any output or in state", async () => {
    expect(await f.leaks()).toBe(0);
  });
});
