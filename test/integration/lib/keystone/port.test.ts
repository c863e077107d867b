/**
 * scripts/keystone.sh when Keystone's default port is taken (a devstack, another checkout's
 * Keystone): an instance started without a port takes a free one, and its instance.json and
 * openrc carry that port to the tests and commands that read them; one whose previous port is
 * taken moves, and still logs the admin in; a port given explicitly and taken is refused.
 *
 * The instance `porttest` is started here and stopped afterwards. The port occupied is
 * KEYSTONE_DEFAULT_PORT (the script's default, 5000 unless set; set it on a shared machine to
 * keep the test within the ports you were given).
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { adminAuth, type KeystoneInstance, keystoneInstance, REPO } from "../../../support/keystone.ts";
import { registerSecrets } from "../../../support/secrets.ts";

const run = promisify(execFile);
const NAME = "porttest";
/** The port a new instance asks for: the script's default. */
const DEFAULT_PORT = Number(process.env.KEYSTONE_DEFAULT_PORT ?? "5000");
/** A first start creates a database and bootstraps Keystone: up to a few minutes on 2 busy cores. */
const START_TIMEOUT_MS = 300_000;
const SCRIPT = join(REPO, "scripts/keystone.sh");

const blockers: Server[] = [];

/**
 * Makes `port` answer connections on loopback, as another service would. A port that is
 * already taken is left as it is: taken either way.
 */
async function occupy(port: number): Promise<void> {
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => {
    server.once("error", () => resolve());
    server.listen(port, "127.0.0.1", () => {
      blockers.push(server);
      resolve();
    });
  });
}

async function start(...args: string[]): Promise<{ stderr: string }> {
  // KEYSTONE_PORT would override the instance's port choice: not what is tested here.
  const { KEYSTONE_PORT: _ignored, ...env } = process.env;
  return run("bash", [SCRIPT, "start", "--name", NAME, ...args], { env, timeout: START_TIMEOUT_MS });
}

/** The admin logs in through the instance's recorded URL (the catalog holds the port too). */
async function adminLogsIn(inst: KeystoneInstance): Promise<void> {
  const client = new KeystoneClient(adminAuth(inst));
  try {
    expect(await client.domainIdByName("Default")).toBe("default");
  } finally {
    client.close();
  }
}

function openrcUrl(): string | undefined {
  const base = process.env.KEYSTONE_TOTP_STATE ?? join(REPO, ".local");
  const openrc = readFileSync(join(base, "keystone", NAME, "openrc"), "utf8");
  return /^export OS_AUTH_URL=['"]?([^'"\n]+)/m.exec(openrc)?.[1];
}

afterAll(async () => {
  for (const server of blockers) server.close();
  await run("bash", [SCRIPT, "stop", "--name", NAME], { timeout: 60_000 });
}, 60_000);

describe("keystone.sh start when the default port is taken", () => {
  it(
    "takes a free port, recorded in instance.json and openrc, and answers there",
    async () => {
      await occupy(DEFAULT_PORT);
      await start();
      const inst = keystoneInstance(NAME);
      registerSecrets(inst.password);
      expect(inst.port).not.toBe(DEFAULT_PORT);
      expect(inst.authUrl).toBe(`http://127.0.0.1:${inst.port}/v3`);
      expect(openrcUrl()).toBe(inst.authUrl);
      await adminLogsIn(inst);
    },
    START_TIMEOUT_MS,
  );

  it(
    "moves an instance whose previous port was taken while it was stopped; the admin still logs in",
    async () => {
      const before = keystoneInstance(NAME);
      await run("bash", [SCRIPT, "stop", "--name", NAME], { timeout: 60_000 });
      await occupy(before.port);
      const { stderr } = await start();
      const after = keystoneInstance(NAME);
      expect(after.port).not.toBe(before.port);
      expect(stderr).toContain(`port ${before.port} is in use: instance ${NAME} takes port ${after.port}`);
      expect(openrcUrl()).toBe(after.authUrl);
      await adminLogsIn(after);
    },
    START_TIMEOUT_MS,
  );

  it(
    "refuses a port given explicitly that is taken, naming it",
    async () => {
      await run("bash", [SCRIPT, "stop", "--name", NAME], { timeout: 60_000 });
      await occupy(DEFAULT_PORT);
      const failure = await start("--port", String(DEFAULT_PORT)).then(
        () => undefined,
        (err: { code?: number; stderr?: string }) => err,
      );
      expect(failure?.code).toBe(1);
      expect(failure?.stderr).toContain(`port ${DEFAULT_PORT} is already in use`);
    },
    START_TIMEOUT_MS,
  );
});
