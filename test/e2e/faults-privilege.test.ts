/**
 * Least privilege: an operator account with only the `member` role (no `admin`) runs `up` on
 * a fleet. It must get a clear message (E_KEYSTONE_FORBIDDEN, naming the admin role) and exit
 * code 3 before any change: no credential in Keystone, no message sent, no write request
 * accepted by Keystone. Once with the preflight (the doctor's checks), once without it
 * (`--skip-doctor`), where the program's first Keystone call must stop the run just as early.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { type FaultFleet, startFaultFleet } from "../support/fleet.ts";
import { adminAuth, adminClient, keystoneInstance, makeUser, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { acceptedWrites } from "../support/proxy.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";

const tag = uniq();
let admin: KeystoneClient;
let f: FaultFleet;
let member: TestUser;
let projectId = "";
const projectName = `kt-priv-${tag}`;

/** Admin REST calls the client does not offer (projects, role assignments). */
async function adminRest(method: string, path: string, json?: unknown): Promise<{ status: number; body: unknown }> {
  const inst = keystoneInstance();
  const base = adminAuth(inst).authUrl;
  const tokenRes = await fetch(`${base}/auth/tokens?nocatalog`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      auth: {
        identity: {
          methods: ["password"],
          password: { user: { name: inst.username, domain: { name: inst.userDomainName }, password: inst.password } },
        },
        scope: { project: { name: inst.projectName, domain: { name: inst.projectDomainName } } },
      },
    }),
  });
  const token = tokenRes.headers.get("x-subject-token") ?? "";
  await tokenRes.arrayBuffer();
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { "x-auth-token": token, ...(json === undefined ? {} : { "content-type": "application/json" }) },
    ...(json === undefined ? {} : { body: JSON.stringify(json) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

beforeAll(async () => {
  admin = adminClient();
  member = await makeUser(admin, `priv-operator-${tag}`);
  registerSecrets(member.password);
  const created = await adminRest("POST", "/projects", { project: { name: projectName, domain_id: "default" } });
  projectId = (created.body as { project: { id: string } }).project.id;
  const roles = await adminRest("GET", "/roles?name=member");
  const roleId = (roles.body as { roles: { id: string }[] }).roles[0]?.id;
  expect((await adminRest("PUT", `/projects/${projectId}/users/${member.id}/roles/${roleId}`)).status).toBe(204);

  f = await startFaultFleet({
    prefix: "e2e-priv",
    people: ["priv0", "priv1", "priv2"],
    operator: {
      OS_USERNAME: member.name,
      OS_PASSWORD: member.password,
      OS_USER_DOMAIN_NAME: "Default",
      OS_PROJECT_NAME: projectName,
      OS_PROJECT_DOMAIN_NAME: "Default",
    },
    // The preflight runs here: one of the two cases is about its message.
    env: { KEYSTONE_TOTP_SKIP_DOCTOR: "" },
  });
});

afterAll(async () => {
  await f?.close();
  if (member) await deleteUser(admin, member.id).catch(() => undefined);
  if (projectId) await adminRest("DELETE", `/projects/${projectId}`);
  admin?.close();
});

describe("an operator account without the admin role", () => {
  it.each([
    // the doctor's line, with the command that grants the role
    [
      "with the preflight",
      [],
      /FAIL keystone\.credentials \[E_KEYSTONE_FORBIDDEN\]: the account cannot manage credentials: needs the admin role on project kt-priv-\w+ in domain Default[^\n]*openstack role add --user priv-operator-\w+ .*admin/,
    ],
    // the program's first Keystone call, refused
    ["with --skip-doctor", ["--skip-doctor"], /\[E_KEYSTONE_FORBIDDEN\][^\n]*admin role/],
  ])("up %s: exit 3, a message naming the admin role, and no change at all", async (_how, extra, message) => {
    const { proxy, smtp, stack, output } = f;
    const fleet = f.people.map((p) => p.user);
    const from = proxy.exchanges().length;
    const r = await f.up(extra);
    const text = r.stdout + r.stderr;
    expect(r.code, text.slice(-3000)).toBe(3);
    expect(text).toMatch(message);
    expect(acceptedWrites(f.proxy, from)).toEqual([]);
    for (const u of fleet) expect(await admin.listTotpCredentials(u.id), u.name).toEqual([]);
    expect(await admin.listTotpCredentials(member.id)).toEqual([]);
    expect(smtp.received).toHaveLength(0);
    expect(smtp.connections).toBe(0);
    // nothing was recorded in the state either
    const state = JSON.parse(await stack.exportText()).deployment as { resources?: { type: string }[] };
    expect((state.resources ?? []).filter((x) => /Totp/.test(x.type))).toEqual([]);
    expect(leakedIn(output.join("\n"), [member.password])).toBe(0);
  });
});
