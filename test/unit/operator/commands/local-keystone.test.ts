import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveKeystoneAuth } from "../../../../lib/keystone/auth.ts";
import { instanceEnv, useLocalKeystoneByDefault } from "../../../../operator/commands/local-keystone.ts";
import { adminEnv } from "../../../support/keystone.ts";

const repo = mkdtempSync(join(tmpdir(), "kt-local-keystone-"));
const instanceDir = join(repo, ".local", "keystone", "default");
mkdirSync(instanceDir, { recursive: true });
const INSTANCE = {
  authUrl: "http://127.0.0.1:5123/v3",
  username: "admin",
  password: "local-admin-pw",
  projectName: "admin",
  userDomainName: "Default",
  projectDomainName: "Default",
  port: 5123,
  name: "default",
};
writeFileSync(join(instanceDir, "instance.json"), JSON.stringify(INSTANCE));

afterAll(() => rmSync(repo, { recursive: true, force: true }));

describe("the local Keystone as the embedded default of operator commands", () => {
  it("with no Keystone configured, the commands' settings resolve to the local instance's admin", () => {
    const env: NodeJS.ProcessEnv = { PATH: "/usr/bin" };
    expect(() => resolveKeystoneAuth({ env, cloudsYamlPaths: [] })).toThrow(/no Keystone credentials/);
    expect(useLocalKeystoneByDefault({ env, repo })?.authUrl).toBe(INSTANCE.authUrl);
    const auth = resolveKeystoneAuth({ env, cloudsYamlPaths: [] });
    expect(auth).toMatchObject({ authUrl: INSTANCE.authUrl, userName: "admin", projectName: "admin" });
    expect(auth.password).toBe(INSTANCE.password);
  });

  it("replaces stray OS_* settings as a whole (no token of another cloud mixed in)", () => {
    const env: NodeJS.ProcessEnv = { OS_TOKEN: "other-cloud-token", OS_PROJECT_ID: "p1", OS_USERNAME: "bob" };
    useLocalKeystoneByDefault({ env, repo });
    expect(env.OS_TOKEN).toBeUndefined();
    expect(env.OS_PROJECT_ID).toBeUndefined();
    expect(env.OS_USERNAME).toBe("admin");
  });

  it.each([
    ["OS_AUTH_URL", { OS_AUTH_URL: "https://keystone.example.com/v3" }, []],
    ["OS_CLOUD", { OS_CLOUD: "prod" }, []],
    ["openstack:* stack config", {}, ["keystone-totp:usersCsv", "openstack:authUrl"]],
  ])("leaves the operator's own Keystone alone: %s", (_what, set, configKeys) => {
    const env: NodeJS.ProcessEnv = { ...set };
    expect(useLocalKeystoneByDefault({ env, repo, configKeys })).toBeUndefined();
    expect(env).toEqual(set);
  });

  it("does nothing without a local instance (the usual 'no Keystone credentials' error stands)", () => {
    const env: NodeJS.ProcessEnv = {};
    expect(useLocalKeystoneByDefault({ env, repo: join(repo, "elsewhere") })).toBeUndefined();
    expect(env).toEqual({});
  });

  it("honours KEYSTONE_TOTP_STATE, as scripts/keystone.sh does", () => {
    const env: NodeJS.ProcessEnv = { KEYSTONE_TOTP_STATE: join(repo, ".local") };
    expect(useLocalKeystoneByDefault({ env, repo: join(repo, "elsewhere") })?.authUrl).toBe(INSTANCE.authUrl);
  });
});

describe("instanceEnv: the one mapping of instance.json to OS_* variables", () => {
  it("gives the admin's settings, the same the tests log in with", () => {
    expect(instanceEnv(INSTANCE)).toEqual({
      OS_AUTH_URL: INSTANCE.authUrl,
      OS_USERNAME: "admin",
      OS_PASSWORD: "local-admin-pw",
      OS_PROJECT_NAME: "admin",
      OS_USER_DOMAIN_NAME: "Default",
      OS_PROJECT_DOMAIN_NAME: "Default",
    });
    expect(adminEnv(INSTANCE)).toEqual(instanceEnv(INSTANCE));
  });

  it("gives nothing for a file with a missing or empty field", () => {
    expect(instanceEnv({ ...INSTANCE, password: "" })).toBeUndefined();
    expect(instanceEnv({ ...INSTANCE, projectName: undefined })).toBeUndefined();
  });
});
