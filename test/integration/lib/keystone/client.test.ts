/**
 * The Keystone client against the real Keystone on loopback: a credential it creates lets the
 * user log in with password + TOTP, and a reset mid-POST leaves exactly one credential.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { KeystoneClient as Client } from "../../../../lib/keystone/client.ts";
import { login } from "../../../../lib/keystone/login.ts";
import { generateSecret, TOTP_PERIOD_S, totpCode } from "../../../../lib/totp/secret.ts";
import { adminAuth, adminClient, keystoneInstance, makeUser, type TestUser, uniq } from "../../../support/keystone.ts";
import { deleteUser } from "../../../support/keystone-admin.ts";
import { type FaultProxy, startFaultProxy } from "../../../support/proxy.ts";

/** Credentials deleted one by one while the user's credentials are listed. */
const RACE_CREDENTIALS = 40;
/** Pause after each of those deletions, in ms. */
const DELETE_EVERY_MS = 100;

let admin: KeystoneClient;
let user: TestUser;

beforeAll(async () => {
  admin = adminClient();
  user = await makeUser(admin, `it-client-${uniq()}`);
});

afterAll(async () => {
  await deleteUser(admin, user.id);
  admin.close();
});

describe("KeystoneClient against the real Keystone", () => {
  it("creates a credential whose code logs the user in with password + TOTP; a wrong code gets 401", async () => {
    const secret = generateSecret();
    const cred = await admin.createTotpCredential(user.id, secret);
    expect(cred.blob).toBe(secret);
    const authUrl = admin.auth.authUrl;
    const good = await login(authUrl, { id: user.id }, { password: user.password, passcode: totpCode(secret) });
    expect(good.status).toBe(201);
    expect(good.methods).toEqual(expect.arrayContaining(["password", "totp"]));
    const wrongCode = String((Number(totpCode(secret)) + 1) % 1_000_000).padStart(6, "0");
    const bad = await login(authUrl, { id: user.id }, { password: user.password, passcode: wrongCode });
    expect(bad.status).toBe(401);
    // the previous window is accepted (included_previous_windows = 1), the next one is not
    const prev = await login(
      authUrl,
      { id: user.id },
      { passcode: totpCode(secret, Date.now() - TOTP_PERIOD_S * 1000) },
    );
    expect(prev.status).toBe(201);
    expect(await admin.deleteCredential(cred.id)).toBe(true);
    expect(await admin.deleteCredential(cred.id)).toBe(false);
    const gone = await login(authUrl, { id: user.id }, { passcode: totpCode(secret) });
    expect(gone.status).toBe(401);
  });

  it("lists a user's credentials while they are being deleted: Keystone 22's own list can fail with 404, the client's never does", async () => {
    const other = await makeUser(admin, `it-client-race-${uniq()}`);
    try {
      const ids: string[] = [];
      for (let i = 0; i < RACE_CREDENTIALS; i++)
        ids.push((await admin.createTotpCredential(other.id, generateSecret())).id);
      const path = `/credentials?${new URLSearchParams({ user_id: other.id, type: "totp" })}`;
      let raw404 = 0;
      let lists = 0;
      let failures = 0;
      let deleting = true;
      // One every DELETE_EVERY_MS: far more often than rotations delete one user's credentials.
      const deleter = (async () => {
        for (const id of ids) {
          await admin.deleteCredential(id);
          await new Promise((r) => setTimeout(r, DELETE_EVERY_MS));
        }
        deleting = false;
      })();
      // Each round asks Keystone once as it is (counting its 404s) and once through the client.
      while (deleting) {
        if ((await admin.call("GET", path, { retry: false, accept: [404] })).status === 404) raw404++;
        try {
          await admin.listTotpCredentials(other.id);
          await (await admin.listAllTotpCredentials()).of(other.id);
          lists++;
        } catch {
          failures++;
        }
      }
      await deleter;
      console.log(`credential list race: ${lists} client lists, ${raw404} plain lists answered 404`);
      expect(lists).toBeGreaterThan(0);
      expect(failures).toBe(0);
      expect(await admin.listTotpCredentials(other.id)).toEqual([]);
    } finally {
      await deleteUser(admin, other.id);
    }
  });

  it("updates a blob in place and reads it back", async () => {
    const cred = await admin.createTotpCredential(user.id, generateSecret());
    const next = generateSecret();
    await admin.updateCredentialBlob(cred.id, next);
    expect((await admin.getCredential(cred.id))?.blob).toBe(next);
    expect(await admin.getCredential("0000000000000000000000000000dead")).toBeUndefined();
    await admin.deleteCredential(cred.id);
  });

  it("finds users by name and domain", async () => {
    expect((await admin.findUser(user.name, "Default"))?.id).toBe(user.id);
    expect(await admin.findUser(user.name, "NoSuchDomain")).toBeUndefined();
    expect(await admin.findUser(`${user.name}-nope`, "Default")).toBeUndefined();
  });
});

describe("connection resets on the way to the real Keystone", () => {
  let proxy: FaultProxy;
  let client: KeystoneClient;

  beforeAll(async () => {
    proxy = await startFaultProxy(keystoneInstance().port);
    client = new Client(adminAuth(keystoneInstance(), `http://127.0.0.1:${proxy.port}/v3`));
  });

  afterAll(async () => {
    client.close();
    await proxy.close();
  });

  it.each(["reset-after", "reset-before"] as const)(
    "a %s on POST /v3/credentials leaves exactly one credential",
    async (fault) => {
      const secret = generateSecret();
      const before = proxy.fired();
      proxy.arm(/^POST \/v3\/credentials /, fault);
      const cred = await client.createTotpCredential(user.id, secret);
      expect(proxy.fired()).toBe(before + 1);
      const mine = (await admin.listTotpCredentials(user.id)).filter((c) => c.blob === secret);
      expect(mine.map((c) => c.id)).toEqual([cred.id]);
      await admin.deleteCredential(cred.id);
    },
  );

  it("resets on GET, PATCH and DELETE are retried", async () => {
    const cred = await client.createTotpCredential(user.id, generateSecret());
    proxy.arm(/^GET \/v3\/credentials\//, "reset-after");
    expect((await client.getCredential(cred.id))?.id).toBe(cred.id);
    proxy.arm(/^PATCH \/v3\/credentials\//, "reset-after");
    const next = generateSecret();
    await client.updateCredentialBlob(cred.id, next);
    expect((await admin.getCredential(cred.id))?.blob).toBe(next);
    proxy.arm(/^DELETE \/v3\/credentials\//, "reset-after");
    await client.deleteCredential(cred.id);
    expect(await admin.getCredential(cred.id)).toBeUndefined();
  });
});
