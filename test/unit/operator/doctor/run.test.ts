/**
 * The whole doctor against a scripted transport: its order, what it skips after a failure, its
 * exit codes, and that no output holds the operator's password. Against the real Keystone:
 * test/integration/operator/doctor.
 */
import { describe, expect, it } from "vitest";
import { TransportError } from "../../../../lib/keystone/http.ts";
import { formatJson, formatText, runDoctor } from "../../../../operator/doctor/run.ts";
import { PASSWORD, scriptedTransport } from "../../../support/doctor.ts";

describe("runDoctor", () => {
  it("without Keystone settings: one config failure, Keystone checks skipped, exit 2", async () => {
    const report = await runDoctor({ env: {}, cloudsYamlPaths: [], skipMail: true });
    expect(report.checks[0]).toMatchObject({ id: "config.keystone", status: "failure", code: "E_CONFIG" });
    expect(report.checks.slice(1).every((c) => c.status === "skipped")).toBe(true);
    expect(report.exitCode).toBe(2);
  });

  it("with Keystone down: reachable fails, the rest is skipped, exit 3, and no password in any output", async () => {
    const env = {
      OS_AUTH_URL: "http://keystone.test:5000/v3",
      OS_USERNAME: "admin",
      OS_PASSWORD: PASSWORD,
      OS_PROJECT_NAME: "admin",
    };
    const report = await runDoctor({
      env,
      cloudsYamlPaths: [],
      skipMail: true,
      transport: scriptedTransport(() => new TransportError("refused", "ECONNREFUSED", "ECONNREFUSED")),
    });
    const byId = Object.fromEntries(report.checks.map((c) => [c.id, c.status]));
    expect(byId).toMatchObject({
      "config.keystone": "ok",
      "keystone.reachable": "failure",
      "keystone.token": "skipped",
      "keystone.credentials": "skipped",
      "keystone.totp-method": "skipped",
      "keystone.clock": "skipped",
    });
    expect(report.exitCode).toBe(3);
    const text = formatText(report);
    expect(text.trimEnd().split("\n")).toHaveLength(report.checks.length + 1);
    expect(text).toMatch(/^FAIL keystone\.reachable: cannot connect/m);
    expect(text).not.toContain(PASSWORD);
    expect(formatJson(report)).not.toContain(PASSWORD);
    expect(JSON.parse(formatJson(report)).exitCode).toBe(3);
  });
});
