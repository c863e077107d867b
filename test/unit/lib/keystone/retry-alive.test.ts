/**
 * A retry's back-off must keep the process alive. With an unref'd timer, a program whose only
 * pending work was a retry against an unreachable Keystone exited 0 half-way: the engine then
 * saw a program that declared no user (a preview of nothing; an `up` deleting every enrollment).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { REPO } from "../../../support/keystone.ts";

const dir = mkdtempSync(join(tmpdir(), "kt-retry-alive-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("a process waiting only on a retry against a closed port ends with the error, not with exit 0", () => {
  const script = join(dir, "program.ts");
  writeFileSync(
    script,
    `import { KeystoneClient } from ${JSON.stringify(join(REPO, "lib/keystone/client.ts"))};
const client = new KeystoneClient(
  { authUrl: "http://127.0.0.1:9/v3", userName: "u", password: "p", projectName: "p", insecure: false, source: "test" } as never,
  { maxAttempts: 3, backoffMaxMs: 200 },
);
try {
  await client.domainIdByName("Default");
  console.log("RESOLVED");
} catch (e) {
  console.log("THREW", (e as { code?: string }).code);
  process.exitCode = 3;
}
`,
  );
  const r = spawnSync(process.execPath, [script], { encoding: "utf8", timeout: 30_000 });
  expect(r.stdout).toContain("THREW E_KEYSTONE_NETWORK");
  expect(r.status).toBe(3);
});
