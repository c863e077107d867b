import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../providers/errors.ts";
import { normaliseAuthUrl, resolveKeystoneAuth } from "../../../providers/keystone/auth.ts";

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
