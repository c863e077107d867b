import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../../lib/errors.ts";
import { normaliseAuthUrl, resolveKeystoneAuth } from "../../../../lib/keystone/auth.ts";
import { tokenRequestBody } from "../../../../lib/keystone/client.ts";

const baseEnv = {
  OS_AUTH_URL: "http://127.0.0.1:5000",
  OS_USERNAME: "admin",
  OS_PASSWORD: "pw-env-1234",
  OS_PROJECT_NAME: "admin",
  OS_USER_DOMAIN_NAME: "Default",
  OS_PROJECT_DOMAIN_NAME: "Default",
};

describe("resolveKeystoneAuth", () => {
  it("reads the OS_* environment", () => {
    const a = resolveKeystoneAuth({ env: baseEnv, cloudsYamlPaths: [] });
    expect(a).toMatchObject({
      authUrl: "http://127.0.0.1:5000/v3",
      userName: "admin",
      password: "pw-env-1234",
      projectName: "admin",
      userDomainName: "Default",
      projectDomainName: "Default",
      insecure: false,
    });
  });

  it("names the variables to set when nothing is configured", () => {
    expect(() => resolveKeystoneAuth({ env: {}, cloudsYamlPaths: [] })).toThrow(
      /OS_CLOUD.*OS_AUTH_URL.*OS_PASSWORD.*openstack:authUrl/s,
    );
    try {
      resolveKeystoneAuth({ env: {}, cloudsYamlPaths: [] });
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).code).toBe("E_CONFIG");
    }
  });

  it("reads a cloud from clouds.yaml and secure.yaml, overridden by stack config", () => {
    const dir = mkdtempSync(join(tmpdir(), "kt-clouds-"));
    writeFileSync(
      join(dir, "clouds.yaml"),
      [
        "clouds:",
        "  lab:",
        "    auth:",
        "      auth_url: https://keystone.lab:5000/v3/",
        "      username: ops",
        "      project_name: ops-project",
        "      user_domain_name: Lab",
        "      project_domain_id: abc123",
        "    verify: false",
      ].join("\n"),
    );
    writeFileSync(join(dir, "secure.yaml"), "clouds:\n  lab:\n    auth:\n      password: from-secure-yaml\n");
    const a = resolveKeystoneAuth({
      env: { OS_CLOUD: "lab" },
      cloudsYamlPaths: [join(dir, "clouds.yaml")],
      config: (k) => (k === "openstack:tenantName" ? "other-project" : undefined),
    });
    expect(a).toMatchObject({
      authUrl: "https://keystone.lab:5000/v3",
      userName: "ops",
      password: "from-secure-yaml",
      projectName: "other-project",
      userDomainName: "Lab",
      projectDomainId: "abc123",
      insecure: true,
    });
    expect(() =>
      resolveKeystoneAuth({ env: { OS_CLOUD: "nope" }, cloudsYamlPaths: [join(dir, "clouds.yaml")] }),
    ).toThrow(/cloud 'nope'/);
  });

  it("reads the pulumi-openstack stack config keys", () => {
    const cfg: Record<string, string> = {
      "openstack:authUrl": "http://10.0.0.1:5000/v3",
      "openstack:userName": "cfg-admin",
      "openstack:password": "pw-cfg-5678",
      "openstack:tenantName": "admin",
      "openstack:userDomainName": "Default",
      "openstack:projectDomainName": "Default",
      "openstack:insecure": "true",
    };
    const a = resolveKeystoneAuth({ env: {}, cloudsYamlPaths: [], config: (k) => cfg[k] });
    expect(a.userName).toBe("cfg-admin");
    expect(a.insecure).toBe(true);
    expect(a.source).toContain("stack config");
  });

  it("reads a CA bundle from a file", () => {
    const dir = mkdtempSync(join(tmpdir(), "kt-ca-"));
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    writeFileSync(join(dir, "ca.pem"), pem);
    const a = resolveKeystoneAuth({ env: { ...baseEnv, OS_CACERT: join(dir, "ca.pem") }, cloudsYamlPaths: [] });
    expect(a.caPem).toBe(pem);
    expect(() =>
      resolveKeystoneAuth({ env: { ...baseEnv, OS_CACERT: join(dir, "missing.pem") }, cloudsYamlPaths: [] }),
    ).toThrow(/CA bundle/);
  });

  it("never puts the password in an error", () => {
    try {
      resolveKeystoneAuth({ env: { ...baseEnv, OS_PROJECT_NAME: "" }, cloudsYamlPaths: [] });
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).toMatch(/no project given/);
      expect((e as Error).message).not.toContain("pw-env-1234");
    }
  });
});

describe("normaliseAuthUrl", () => {
  it.each([
    ["http://h:5000", "http://h:5000/v3"],
    ["http://h:5000/v3/", "http://h:5000/v3"],
    ["https://h/identity", "https://h/identity/v3"],
  ])("%s -> %s", (a, b) => expect(normaliseAuthUrl(a)).toBe(b));

  it("refuses v2, other schemes and embedded credentials", () => {
    expect(() => normaliseAuthUrl("http://h:5000/v2.0")).toThrow(/v2/);
    expect(() => normaliseAuthUrl("ftp://h")).toThrow(ConfigError);
    expect(() => normaliseAuthUrl("http://u:p@h")).toThrow(/credentials/);
  });
});

describe("settings layers: the highest layer's choice wins as a whole", () => {
  const stack: Record<string, string> = {
    "openstack:authUrl": "http://10.0.0.1:5000/v3",
    "openstack:userName": "cfg-admin",
    "openstack:password": "pw-cfg-5678",
    "openstack:tenantName": "cfg-project",
    "openstack:userDomainName": "Default",
    "openstack:projectDomainName": "Default",
  };
  const fromStack = (env: Record<string, string>) =>
    resolveKeystoneAuth({ env, cloudsYamlPaths: [], config: (k) => stack[k] });

  it("a stray OS_TOKEN does not replace the stack's user and password", () => {
    const a = fromStack({ OS_TOKEN: "tok-env-9999" });
    expect(a.token).toBeUndefined();
    expect(tokenRequestBody(a)).toMatchObject({
      auth: { identity: { methods: ["password"], password: { user: { name: "cfg-admin", password: "pw-cfg-5678" } } } },
    });
  });

  it("OS_USER_ID and OS_PROJECT_ID do not replace the stack's user and project names", () => {
    const a = fromStack({ OS_USER_ID: "env-user-id", OS_PROJECT_ID: "env-project-id", OS_USER_DOMAIN_ID: "d-env" });
    expect(a).toMatchObject({
      userId: undefined,
      userName: "cfg-admin",
      projectId: undefined,
      userDomainId: undefined,
    });
    const body = tokenRequestBody(a) as {
      auth: { identity: { password: { user: unknown } }; scope: { project: unknown } };
    };
    expect(body.auth.identity.password.user).toMatchObject({ name: "cfg-admin", domain: { name: "Default" } });
    expect(body.auth.scope.project).toEqual({ name: "cfg-project", domain: { name: "Default" } });
  });

  it("a token in the stack config beats a user and password from the environment", () => {
    const a = resolveKeystoneAuth({
      env: baseEnv,
      cloudsYamlPaths: [],
      config: (k) => ({ "openstack:token": "tok-cfg-1111", "openstack:tenantId": "p-cfg" })[k],
    });
    expect(a).toMatchObject({ token: "tok-cfg-1111", userName: undefined, projectId: "p-cfg", projectName: undefined });
  });

  it("keys the higher layer leaves unset still come from lower layers", () => {
    const a = resolveKeystoneAuth({
      env: { ...baseEnv, OS_USERNAME: "env-admin" },
      cloudsYamlPaths: [],
      config: (k) => ({ "openstack:userName": "cfg-admin" })[k],
    });
    expect(a).toMatchObject({ userName: "cfg-admin", password: "pw-env-1234", projectName: "admin" });
  });
});

describe("an unparsable auth URL", () => {
  const bad = "https://ops:pw-in-url-4321@keystone .example/v3?token=tok-in-query";

  it("is never echoed: the error names the setting, not the value", () => {
    for (const [env, config, setting] of [
      [{ ...baseEnv, OS_AUTH_URL: bad }, () => undefined, "OS_AUTH_URL"],
      [baseEnv, (k: string) => (k === "openstack:authUrl" ? bad : undefined), "openstack:authUrl"],
    ] as const) {
      const err = (() => {
        try {
          resolveKeystoneAuth({ env, cloudsYamlPaths: [], config });
        } catch (e) {
          return e as ConfigError;
        }
      })();
      expect(err).toBeInstanceOf(ConfigError);
      expect(err?.message).toContain(`the auth URL in ${setting} is not a URL`);
      const everything = `${err?.message} ${String(err?.cause)} ${JSON.stringify(err)}`;
      for (const secret of ["pw-in-url-4321", "ops:", "tok-in-query"]) expect(everything).not.toContain(secret);
    }
    expect(() => normaliseAuthUrl(bad)).toThrow(/^(?!.*pw-in-url).*not a URL/);
  });
});
