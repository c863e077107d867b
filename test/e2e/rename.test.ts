/**
 * A user renamed in Keystone (same user ID) and then in the users CSV, through the real engine
 * and the real Keystone: the new name is a new enrollment, created before the old one is
 * deleted. The old one's delete must not give the user back the options from before the tool
 * while the new credential exists: the user would then log in with a TOTP code alone (see the
 * login matrix in the README's Security model). With `enforceMfa`, the old name's enforcement,
 * deleted after the new name's enforced the rules again, must not loosen them either: a password
 * alone would then log in. Measured by logging in as the user would, with a watcher checking during
 * each run that the user never holds a TOTP credential while their options admit a TOTP code
 * alone, and trying a TOTP code alone with the secrets already mailed.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { fleetStack, mailedSecrets, makePerson, type Person, upAllowFail, writeFleetCsv } from "../support/fleet.ts";
import { adminClient, adminEnv, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import {
  type AppCredential,
  credentialIds,
  deleteProject,
  grantRole,
  keystoneUrl,
  type LoginMatrix,
  loginMatrix,
  loginTotpAlone,
  makeAppCredential,
  makeProject,
  readUserOptions,
  renameUser,
  type UserOptions,
  watchTotpAlone,
} from "../support/posture.ts";
import type { TestStack } from "../support/pulumi.ts";
import { leakedIn } from "../support/secrets.ts";
import { secretOfMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

/** What an enrolled, staged user can do: everything but a TOTP code alone. */
const STAGED_LOGINS: LoginMatrix = { password: 201, totpAlone: 401, passwordTotp: 201, appCredential: 201 };
/** What an enrolled user under `enforceMfa` can do: password + TOTP, and their automation. */
const ENFORCED_LOGINS: LoginMatrix = { password: 401, totpAlone: 401, passwordTotp: 201, appCredential: 201 };

function renameSuite(enforce: boolean): void {
  const ENROLLED = enforce ? ENFORCED_LOGINS : STAGED_LOGINS;
  const label = enforce ? "enforced" : "staged";
  describe(`a user renamed in Keystone and in the CSV, through the real engine (${label})`, () => {
    const tag = uniq();
    let admin: KeystoneClient;
    let smtp: TestSmtpServer;
    let stack: TestStack;
    let csv: string;
    let projectId: string;
    let person: Person;
    let ac: AppCredential;
    let before: UserOptions;
    let baseline: LoginMatrix;
    let watcher: ReturnType<typeof watchTotpAlone>;
    const secrets: string[] = [];
    const output: string[] = [];

    /** The secret of the latest message the person received; `count` messages expected in all. */
    async function latestSecret(count: number): Promise<string> {
      const msgs = smtp.messagesFor(person.email);
      expect(msgs).toHaveLength(count);
      const secret = await secretOfMessage(msgs.at(-1) as Buffer);
      secrets.push(secret);
      return secret;
    }

    beforeAll(async () => {
      admin = adminClient(keystoneUrl());
      csv = join(mkdtempSync(join(tmpdir(), `kt-rename-${label}-`)), "users.csv");
      projectId = await makeProject(`kt-rename-${tag}`);
      person = await makePerson(admin, "renamed", tag);
      await grantRole(person.user.id, projectId);
      ac = await makeAppCredential(person.user, projectId);
      before = await readUserOptions(admin, person.user.id);
      baseline = await loginMatrix(person.user, undefined, ac);
      smtp = await startSmtpServer();
      writeFleetCsv(csv, [person]);
      stack = await fleetStack(`e2e-rename-${label}`, {
        authUrl: keystoneUrl(),
        smtp,
        csv,
        env: { KEYSTONE_TOTP_SKIP_DOCTOR: "1" },
        config: enforce ? { enforceMfa: "true" } : {},
      });
      // The person is replaced on rename (same ID): the watcher reads their current address.
      watcher = watchTotpAlone([{ id: person.user.id, name: person.user.name }], () => mailedSecrets(smtp, person));
    });

    afterAll(async () => {
      await watcher?.stop();
      await stack?.destroy().catch(() => undefined);
      await stack?.remove();
      await smtp?.close();
      if (person) await deleteUser(admin, person.user.id).catch(() => undefined);
      if (projectId) await deleteProject(projectId);
      admin?.close();
    });

    it(`enrolled under the first name: ${label} (TOTP alone 401${enforce ? ", password alone 401" : ", the rest 201"})`, async () => {
      const r = await upAllowFail(stack, output);
      expect(r.code, (r.stdout + r.stderr).slice(-3000)).toBe(0);
      const secret = await latestSecret(1);
      expect(await loginMatrix(person.user, secret, ac)).toEqual(ENROLLED);
    });

    it(`renamed: the new name's QR code logs in with the password, a TOTP code alone still does not${enforce ? ", nor a password alone" : ""}; one credential; automation unaffected`, async () => {
      const first = (await credentialIds(admin, person.user.id))[0];
      const oldSecret = secrets[0] as string;
      const newName = `${person.user.name}-new`;
      await renameUser(person.user.id, newName);
      person = { ...person, user: { ...person.user, name: newName } };
      writeFleetCsv(csv, [person]);
      const r = await upAllowFail(stack, output);
      expect(r.code, (r.stdout + r.stderr).slice(-3000)).toBe(0);
      const ids = await credentialIds(admin, person.user.id);
      expect(ids).toHaveLength(1);
      expect(ids).not.toContain(first);
      const secret = await latestSecret(2);
      expect(await loginMatrix(person.user, secret, ac)).toEqual(ENROLLED);
      expect(await loginTotpAlone(person.user.id, oldSecret)).toBe(401);
      // The rules and their record of the options before the tool stay, for the new enrollment.
      expect((await readUserOptions(admin, person.user.id)).marker).not.toBeNull();
    });

    it("a rerun changes nothing and sends nothing", async () => {
      const r = await upAllowFail(stack, output, ["--expect-no-changes"]);
      expect(r.code, (r.stdout + r.stderr).slice(-3000)).toBe(0);
      expect(smtp.messagesFor(person.email)).toHaveLength(2);
    });

    it("destroy: no credential, options and marker exactly as before enrollment, logins as before", async () => {
      await stack.destroy();
      expect(await credentialIds(admin, person.user.id)).toEqual([]);
      expect(await readUserOptions(admin, person.user.id)).toEqual(before);
      expect(await loginMatrix(person.user, undefined, ac)).toEqual(baseline);
    });

    it("a TOTP code alone never got a token at any point of the runs above", async () => {
      const report = await watcher.stop();
      console.log(
        `rename (${label}): ${report.tries} probes of credentials and options, ${report.logins} TOTP-alone logins ` +
          `with mailed secrets, ${report.errors} errors; open ${report.opened.length}`,
      );
      // The watcher really looked (a watcher that never probed would prove nothing) and never failed.
      expect(report.tries).toBeGreaterThan(0);
      expect(report.errors, report.errorMessages.join("; ")).toBe(0);
      expect(report.opened).toEqual([]);
      expect(report.openLogin).toEqual([]);
    });

    it("no secret in any output or in state", async () => {
      const all = [adminEnv().OS_PASSWORD ?? "", person.user.password, ac.secret, ...secrets];
      expect(leakedIn(output.join("\n") + (await stack.exportText()), all)).toBe(0);
    });
  });
}

renameSuite(false);
renameSuite(true);
