import { describe, expect, it } from "vitest";
import { enrollmentSeries, esc, renderStatusHtml, rotationSeries } from "../../../providers/report/html.ts";
import { buildStatus, countStatus, formatTable, type StateResource } from "../../../providers/report/status.ts";

const T = "pulumi-nodejs:dynamic/keystone-totp";
const urn = (type: string, name: string) => `urn:pulumi:dev::keystone-totp::${T}:${type}::${name}`;

function user(
  name: string,
  o: { cred?: string; delivered?: boolean; retiring?: string[]; days?: number; mfa?: boolean } = {},
) {
  const out: StateResource[] = [
    {
      urn: urn("TotpCredential", name),
      type: `${T}:TotpCredential`,
      inputs: { rotationDays: o.days ?? 30 },
      outputs: {
        credentialId: o.cred ?? `c-${name}`,
        resolvedUserId: `u-${name}`,
        createdAt: "2027-01-01T00:00:00.000Z",
        rotatedAt: "2027-01-10T00:00:00.000Z",
        secret: { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", ciphertext: "x" },
      },
    },
  ];
  if (o.delivered !== false) {
    out.push({
      urn: urn("TotpDelivery", name),
      type: `${T}:TotpDelivery`,
      inputs: { email: `${name}@example.com` },
      outputs: {
        credentialId: o.cred ?? `c-${name}`,
        deliveredAt: "2027-01-10T00:00:00.000Z",
        deliveredTo: `${name}@example.com`,
        retiring: o.retiring ?? [],
        graceHours: 24,
      },
    });
  }
  if (o.mfa)
    out.push({
      urn: urn("MfaEnforcement", name),
      type: `${T}:MfaEnforcement`,
      outputs: { rules: [["password", "totp"]] },
    });
  return out;
}

describe("status rows", () => {
  const resources = [
    ...user("alice", { mfa: true }),
    ...user("bob", { retiring: ["c-bob-old"] }),
    ...user("carol", { delivered: false }),
    ...user("dave"),
    ...user("erin"),
  ];
  const keystone = new Map<string, string[]>([
    ["u-alice", ["c-alice"]],
    ["u-bob", ["c-bob", "c-bob-old"]],
    ["u-carol", ["c-carol"]],
    ["u-dave", ["c-dave", "by-hand"]],
    // erin's credential was deleted outside Pulumi
  ]);
  const rows = buildStatus(resources, keystone, ["alice", "frank"]);
  const get = (n: string) => rows.find((r) => r.user === n);

  it("gives each user the state an operator must act on", () => {
    expect(Object.fromEntries(rows.map((r) => [r.user, r.state]))).toEqual({
      alice: "ok",
      bob: "retiring",
      carol: "not-delivered",
      dave: "unmanaged",
      erin: "missing",
      frank: "not-enrolled",
    });
    expect(get("dave")?.unmanagedIds).toEqual(["by-hand"]);
    expect(get("bob")?.retireAfter).toBe("2027-01-11T00:00:00.000Z");
  });

  it("lists exactly what Keystone holds, and the next rotation from the last one", () => {
    expect(get("bob")?.keystoneCredentialIds).toEqual(["c-bob", "c-bob-old"]);
    expect(get("erin")?.keystoneCredentialIds).toEqual([]);
    expect(get("alice")?.nextRotation).toBe("2027-02-09T00:00:00.000Z");
    expect(get("alice")?.mfaEnforced).toBe(true);
  });

  it("counts, and never prints an encrypted secret", () => {
    const c = countStatus(rows, new Date("2027-02-05T00:00:00Z"), keystone);
    expect(c.byState.ok).toBe(1);
    expect(c.keystoneCredentials).toBe(6);
    expect(c.rotationsDueIn7Days).toBe(5);
    expect(formatTable(rows)).not.toContain("ciphertext");
    expect(JSON.stringify(rows)).not.toContain("ciphertext");
  });
});

describe("status rows and the CSV's spelling", () => {
  it("a CSV user spelled in another case than the resource (Keystone's spelling) is the enrolled user", () => {
    const rows = buildStatus(user("user03"), new Map([["u-user03", ["c-user03"]]]), ["USER03", "nobody"]);
    expect(Object.fromEntries(rows.map((r) => [r.user, r.state]))).toEqual({ user03: "ok", nobody: "not-enrolled" });
  });
});

describe("HTML report", () => {
  it("escapes names, includes both charts, and loads nothing from outside", () => {
    const rows = buildStatus(user("<script>alert(1)</script>"), undefined);
    const at = new Date("2027-01-20T00:00:00Z");
    const html = renderStatusHtml("status <x>", rows, countStatus(rows, at), at);
    expect(html).not.toContain("<script>");
    expect(html).toContain(esc("<script>alert(1)</script>"));
    expect(html.match(/<svg /g)).toHaveLength(2);
    expect(html).not.toMatch(/(src|href)=["']?https?:/);
  });

  it("series: cumulative enrollments per day, rotations per week from now", () => {
    const rows = buildStatus([...user("a"), ...user("b"), ...user("c", { days: 120 })], undefined);
    expect(enrollmentSeries(rows)).toEqual([["2027-01-01", 3]]);
    const weeks = rotationSeries(rows, new Date("2027-01-20T00:00:00Z"));
    expect(weeks[2]?.[1]).toBe(2); // 2027-02-09 is in the third week
    expect(weeks.reduce((n, [, v]) => n + v, 0)).toBe(2); // 120 days on is beyond 12 weeks
  });
});
