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
import { adminClient, makeUser, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { deleteProject, grantRole, makeProject } from "../support/posture.ts";
import { acceptedWrites } from "../support/proxy.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";

const tag = uniq();
let admin: KeystoneClient;
let f: FaultFleet;
let member: TestUser;
let projectId = "";
const projectName = `kt-priv-${tag}`;

beforeAll(async () => {
  admin = adminClient();
  member = await makeUser(admin, `priv-operator-${tag}`);
  registerSecrets(member.password);
  projectId = await makeProject(projectName);
  await grantRole(member.id, projectId, "member");

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
  if (projectId) await deleteProject(projectId);
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
