/**
 * The fleet on Pulumi's PostgreSQL state backend (a database of its own on the tests'
 * PostgreSQL), through the real engine, Keystone and SMTP server: `up`, a skipped rerun (its
 * record in the same database), an edit, two runs of one stack at once (the second refused,
 * nothing lost), a runner killed mid-run (its lock; `unlock` keeps a live run's lock and
 * removes the dead one's), destroy; and what the database holds: secrets only as ciphertext.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DIY_PARALLEL_ENV } from "../../operator/backend/bucket.ts";
import { type FaultFleet, mailedSecrets, startFaultFleet } from "../support/fleet.ts";
import { REPO } from "../support/keystone.ts";
import { type StateDatabase, stateDatabase } from "../support/postgres.ts";
import { alive, collect, killTree, spawnCollecting, until } from "../support/process.ts";
import { leakedIn } from "../support/secrets.ts";

const LOCKED = /the stack is currently locked/;
/** A skipped rerun takes a few seconds; one that waits on the database's connections never ends. */
const LIST_WITHIN_MS = 60_000;
/** How long a held credential create keeps the first run (and its lock) going. */
const HOLD_MS = 20_000;

let db: StateDatabase;
let f: FaultFleet;

/** `npm run unlock` for the fleet's stack. */
const unlock = (...args: string[]) =>
  collect("node", [join(REPO, "scripts/unlock.ts"), "--stack", f.stack.name, ...args], {
    cwd: REPO,
    env: f.stack.environment(),
  });

/** The stack's lock rows in the database. */
async function locks(): Promise<string[]> {
  return (await db.rows()).map((r) => r.key).filter((k) => k.includes("/.pulumi/locks/"));
}

/** A detached `up` of the stack (to be raced or killed), in the stack's environment or `env`. */
function startUp(extra: string[] = [], env: Record<string, string> = f.stack.environment()) {
  return spawnCollecting(
    "node",
    [
      join(REPO, "scripts/provision.ts"),
      "up",
      "--yes",
      "--stack",
      f.stack.name,
      "--config-file",
      f.stack.configFile,
      ...extra,
    ],
    { cwd: REPO, env, detached: true },
  );
}

beforeAll(async () => {
  db = stateDatabase("kt_e2e_state");
  f = await startFaultFleet({
    prefix: "e2e-backend-pg",
    people: ["pg0", "pg1"],
    env: { KEYSTONE_TOTP_SKIP_DOCTOR: "1", KEYSTONE_TOTP_NO_SKIP: "0", PULUMI_BACKEND_URL: db.url },
  });
});

afterAll(async () => {
  await f?.close();
  await db?.drop();
});

describe("the fleet on the PostgreSQL state backend", () => {
  it("up, a skipped rerun (record in the database), an added user", async () => {
    const first = await f.up();
    expect(first.code, first.stderr).toBe(0);
    expect(f.smtp.received.length).toBe(2);
    // The CLI keys every blob below the database's name; the skip record sits beside the state.
    const keys = (await db.rows()).map((r) => r.key.slice(r.key.indexOf("/") + 1));
    expect(keys).toContain(`.pulumi/stacks/keystone-totp/${f.stack.name}.json`);
    expect(keys).toContain(`.keystone-totp/skip/keystone-totp/${f.stack.name}.json`);

    const again = await f.up();
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/nothing can change: skipped/);

    f.people.push(await f.person("pg2"));
    f.writeCsv();
    const added = await f.up();
    expect(added.code, added.stderr).toBe(0);
    expect(f.smtp.received.length).toBe(3);
    for (const p of f.people) p.issued = 1;
    const t = await f.tally();
    expect(t.lost).toEqual([]);
    expect(t.duplicated).toBe(0);
  });

  it("on one CPU, with a second stack in the database, the skipped rerun lists the stacks and ends", async () => {
    // Pulumi's CLI lists stacks with 10 readers that each hold one of its 2 x GOMAXPROCS
    // connections while asking for another: with 2 stacks on one CPU that waited forever, until
    // the commands set PULUMI_DIY_BACKEND_PARALLEL=1 (operator/backend/bucket.ts).
    const project = mkdtempSync(join(tmpdir(), "kt-pg-other-"));
    writeFileSync(join(project, "Pulumi.yaml"), "name: keystone-totp\nruntime: nodejs\n");
    const other = `${f.stack.name}-other`;
    const env = f.stack.environment({ GOMAXPROCS: "1" });
    delete env[DIY_PARALLEL_ENV];
    try {
      const init = await collect("pulumi", ["stack", "init", other, "--no-select", "--non-interactive"], {
        cwd: project,
        env,
      });
      expect(init.code, init.stderr).toBe(0);
      const run = startUp([], env);
      const ended = await Promise.race([
        run.result,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), LIST_WITHIN_MS)),
      ]);
      if (ended === undefined) killTree(run.child.pid as number);
      expect(ended, `still running after ${LIST_WITHIN_MS} ms:\n${run.output().slice(-2000)}`).toBeDefined();
      expect(ended?.code, run.output()).toBe(0);
      expect(ended?.stderr).toMatch(/nothing can change: skipped/);
    } finally {
      await collect("pulumi", ["stack", "rm", other, "--yes", "--force", "--non-interactive"], { cwd: project, env });
      rmSync(project, { recursive: true, force: true });
    }
  });

  it("two runs of one stack at once: the second is refused, unlock keeps the live lock, nothing is lost", async () => {
    f.people.push(await f.person("pg3"));
    f.writeCsv();
    // The new user's create is held, so the first run holds its lock while the others start.
    f.proxy.arm(/^POST \/v3\/credentials/, { delayMs: HOLD_MS }, 1);
    const a = startUp();
    await until("the first run's lock", async () => (await locks()).length > 0, 60_000);
    const b = await collect(
      "node",
      [
        join(REPO, "scripts/provision.ts"),
        "up",
        "--yes",
        "--force",
        "--stack",
        f.stack.name,
        "--config-file",
        f.stack.configFile,
      ],
      { cwd: REPO, env: f.stack.environment() },
    );
    f.output.push(b.stdout, b.stderr);
    expect(b.code).not.toBe(0);
    expect(b.stdout + b.stderr).toMatch(LOCKED);
    expect(b.stderr).toMatch(/npm run unlock/);
    const kept = await unlock();
    expect(kept.code).toBe(1);
    expect(kept.stdout).toMatch(/kept the lock .* still runs/);
    const ra = await a.result;
    f.output.push(ra.stdout, ra.stderr);
    f.proxy.disarm();
    expect(ra.code, ra.stderr).toBe(0);
    expect(await locks()).toEqual([]);
    for (const p of f.people) p.issued = 1;
    const t = await f.tally();
    expect(t.lost).toEqual([]);
    expect(t.duplicated).toBe(0);
  });

  it("a runner killed mid-run leaves its lock: unlock removes it, refresh and up repair the fleet", async () => {
    const p = await f.person("pg4");
    f.people.push(p);
    f.writeCsv();
    f.proxy.arm(/^POST \/v3\/credentials/, { delayMs: 120_000 }, 1);
    const run = startUp();
    await until("the run's lock", async () => (await locks()).length > 0, 60_000);
    await until("the held create", () => f.proxy.count(/^POST \/v3\/credentials/) > 0, 60_000);
    const tree = killTree(run.child.pid ?? 0);
    await run.result;
    f.output.push(run.output());
    await until("the killed processes to be gone", () => tree.every((pid) => !alive(pid)), 10_000);
    f.proxy.disarm();
    expect(await locks()).toHaveLength(1);
    const refused = await f.up();
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toMatch(LOCKED);

    const removed = await unlock();
    expect(removed.code, removed.stdout + removed.stderr).toBe(0);
    expect(removed.stdout).toMatch(/removed the lock .* that process is gone/);
    expect(await locks()).toEqual([]);
    const clear = await f.stack.run(["refresh", "--yes", "--clear-pending-creates"], { allowFail: true });
    f.output.push(clear.stdout, clear.stderr);
    expect(clear.code, clear.stderr).toBe(0);
    const repaired = await f.up();
    expect(repaired.code, repaired.stderr).toBe(0);
    p.issued = 1;
    const t = await f.tally();
    expect(t.lost).toEqual([]);
    expect(t.credentials[p.user.name]).toBe(1);
  });

  it("the database holds no secret in the clear; destroy empties the stack", async () => {
    const rows = await db.rows();
    const text = rows.map((r) => r.blob).join("\n");
    const state = rows.find((r) => r.key.endsWith(`/.pulumi/stacks/keystone-totp/${f.stack.name}.json`))?.blob ?? "";
    expect(state).toMatch(/ciphertext/);
    expect(await f.leaks([])).toBe(0);
    // The database's own text: the people's passwords and every secret they were mailed.
    const secrets = (await Promise.all(f.people.map((p) => mailedSecrets(f.smtp, p)))).flat();
    expect(secrets.length).toBeGreaterThanOrEqual(f.people.length);
    expect(leakedIn(text, [...secrets, ...f.people.map((p) => p.user.password)])).toBe(0);

    const destroyed = await f.stack.run(["destroy", "--yes"], { allowFail: true });
    f.output.push(destroyed.stdout, destroyed.stderr);
    expect(destroyed.code, destroyed.stderr).toBe(0);
    for (const p of f.people) expect(await f.admin.listTotpCredentials(p.user.id), p.user.name).toEqual([]);
  });
});
