/**
 * After `npm run demo`, the next operator commands find the demo's Keystone: with no OS_*
 * variables, no OS_CLOUD and no openstack:* stack config, `npm run status` and `npm run doctor`
 * (through scripts/with-env.sh, as npm runs them) use the local Keystone of
 * .local/keystone/default, and say so. A Keystone the operator named still wins, in the
 * environment or in the settings file given with --config-file.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dump as dumpYaml, load as loadYaml } from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { userKey } from "../../lib/users/csv.ts";
import { adminClient, adminEnv, keystoneInstance, makeUser, REPO, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { collect } from "../support/process.ts";
import { type RunResult, TestStack } from "../support/pulumi.ts";
import { registerSecrets } from "../support/secrets.ts";

const tag = uniq();
let admin: KeystoneClient;
let user: TestUser;
let stack: TestStack;

/** The stack's environment without any Keystone setting: what a new shell after the demo has. */
function noKeystoneEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env = stack.environment();
  for (const name of Object.keys(env)) if (name.startsWith("OS_")) delete env[name];
  return { ...env, ...extra };
}

/** Runs `npm run NAME -- ARGS` the way package.json does: scripts/with-env.sh node scripts/NAME.ts. */
function operator(name: string, args: string[], env: Record<string, string>): Promise<RunResult> {
  return collect("bash", [join(REPO, "scripts/with-env.sh"), "node", `scripts/${name}.ts`, ...args], {
    cwd: REPO,
    env,
  });
}

beforeAll(async () => {
  admin = adminClient();
  user = await makeUser(admin, `e2e-localdef-${tag}`);
  registerSecrets(user.password);
  const dir = mkdtempSync(join(tmpdir(), "kt-localdef-"));
  const csv = join(dir, "users.csv");
  writeFileSync(csv, `username,email\n${user.name},${user.name}@example.com\n`);
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD ?? "");
  stack = new TestStack("e2e-localdef", env);
  await stack.init();
  await stack.set("keystone-totp:usersCsv", csv);
  await stack.set("keystone-totp:outboxDir", join(dir, "outbox"));
  await stack.up();
});

afterAll(async () => {
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  if (user) await deleteUser(admin, user.id).catch(() => undefined);
  admin?.close();
});

describe("operator commands after the demo, with no Keystone settings", () => {
  it("status reports the enrolled user from Keystone, naming the local Keystone it used", async () => {
    const r = await operator("status", ["--stack", stack.name, "--config-file", stack.configFile], noKeystoneEnv());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${userKey("Default", user.name)} +ok `, "m"));
    expect(r.stderr).toContain(`using the local Keystone at ${keystoneInstance().authUrl}`);
  });

  it("doctor passes its Keystone checks against the local Keystone", async () => {
    const r = await operator("doctor", ["--no-mail", "--json"], noKeystoneEnv());
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const report = JSON.parse(r.stdout) as { checks: { id: string; status: string }[] };
    const keystone = report.checks.filter((c) => c.id.startsWith("keystone."));
    expect(keystone.length).toBeGreaterThan(0);
    for (const c of keystone) expect(c.status, c.id).not.toBe("failure");
  });

  it("status --keystone takes the Keystone settings of --config-file, its password a secret, not the stack's", async () => {
    // The operator keeps the Keystone settings in the file given to every command (as CI does),
    // the password encrypted; no OS_* variable and nothing in the stack's own settings.
    const inst = keystoneInstance();
    const doc = (loadYaml(readFileSync(stack.configFile, "utf8")) ?? {}) as { config?: Record<string, unknown> };
    const file = join(mkdtempSync(join(tmpdir(), "kt-localdef-cfg-")), `Pulumi.${stack.name}.yaml`);
    writeFileSync(
      file,
      dumpYaml({
        ...doc,
        config: {
          ...doc.config,
          "openstack:authUrl": inst.authUrl,
          "openstack:userName": inst.username,
          "openstack:tenantName": inst.projectName,
          "openstack:userDomainName": inst.userDomainName,
          "openstack:projectDomainName": inst.projectDomainName,
        },
      }),
      { mode: 0o600 },
    );
    const set = await collect(
      "pulumi",
      ["config", "set", "--secret", "--stack", stack.name, "--config-file", file, "--non-interactive"].concat([
        "openstack:password",
        "--",
        inst.password,
      ]),
      { cwd: REPO, env: stack.environment() },
    );
    expect(set.code, set.stderr).toBe(0);
    expect(readFileSync(file, "utf8")).not.toContain(inst.password);
    const r = await operator("status", ["--json", "--stack", stack.name, "--config-file", file], noKeystoneEnv());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain("using the local Keystone");
    // Keystone was asked: the user's credential and login posture come from it.
    const report = JSON.parse(r.stdout) as {
      users: { user: string; state: string; posture?: string; keystoneCredentialIds?: string[] }[];
    };
    const row = report.users.find((u) => u.user === userKey("Default", user.name));
    expect(row?.state).toBe("ok");
    expect(row?.keystoneCredentialIds).toHaveLength(1);
    expect(row?.posture).toBe("staged");
  });

  it("a Keystone the operator named (OS_CLOUD) wins: the local one is not used", async () => {
    const r = await operator(
      "status",
      ["--stack", stack.name, "--config-file", stack.configFile],
      noKeystoneEnv({ OS_CLOUD: `nosuchcloud${tag}`, OS_CLIENT_CONFIG_FILE: "/nonexistent/clouds.yaml" }),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`nosuchcloud${tag}`);
    expect(r.stderr).not.toContain("using the local Keystone");
  });
});
