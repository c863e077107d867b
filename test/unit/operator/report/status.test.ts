import { describe, expect, it } from "vitest";
import { MARKER_ATTRIBUTE } from "../../../../lib/mfa/posture.ts";
import { enrollmentSeries, esc, renderStatusHtml, rotationSeries } from "../../../../operator/report/html.ts";
import {
  buildStatus,
  countStatus,
  formatTable,
  type PostureSource,
  type StateResource,
  statusCsv,
} from "../../../../operator/report/status.ts";

const T = "pulumi-nodejs:dynamic/keystone-totp";
const urn = (type: string, name: string) => `urn:pulumi:dev::keystone-totp::${T}:${type}::${name}`;

function user(
  name: string,
  o: {
    cred?: string;
    delivered?: boolean;
    retiring?: string[];
    days?: number;
    mfa?: boolean;
    retireFailed?: Record<string, unknown>;
  } = {},
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
        ...(o.retireFailed ? { retireFailed: o.retireFailed } : {}),
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

describe("status of a failed retirement", () => {
  const failure = {
    ids: ["c-gus-old"],
    at: "2027-01-10T01:00:00.000Z",
    code: "E_KEYSTONE_HTTP",
    error: "DELETE /v3/credentials/c-gus-old failed: 503",
  };
  const resources = user("gus", { retiring: ["c-gus-old"], retireFailed: failure });

  it("an old credential Keystone would not delete is not a healthy 'retiring': the row says which and why", () => {
    const rows = buildStatus(resources, new Map([["u-gus", ["c-gus", "c-gus-old"]]]));
    expect(rows[0]?.state).toBe("retire-failed");
    expect(rows[0]?.retireFailed).toEqual(failure);
    expect(formatTable(rows)).toMatch(/^gus +retire-failed /m);
    expect(countStatus(rows, new Date("2027-01-11T00:00:00Z")).byState["retire-failed"]).toBe(1);
  });

  it("once Keystone no longer holds it (deleted by hand), the failure is over", () => {
    const rows = buildStatus(resources, new Map([["u-gus", ["c-gus"]]]));
    expect(rows[0]?.state).toBe("ok");
    expect(rows[0]?.retireFailed).toBeUndefined();
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

describe("posture column", () => {
  const METHODS = ["external", "password", "token", "oauth1", "totp", "application_credential"];
  const marker = { v: 1, previous: { enabled: null, rules: null } };
  const staged = [["external"], ["password"], ["oauth1"], ["application_credential"]];
  const enforced = [["external"], ["password", "totp"], ["oauth1"], ["application_credential"]];
  const resources = [
    ...user("alice"),
    ...user("bob"),
    ...user("carol"),
    ...user("dave"),
    ...user("erin"),
    ...user("=HYPERLINK(1)"),
    ...user("<b>x</b>"),
  ];
  const keystone = new Map<string, string[]>(
    ["alice", "bob", "carol", "dave", "=HYPERLINK(1)", "<b>x</b>"].map((n) => [`u-${n}`, [`c-${n}`]]),
  );
  const on = (rules: string[][]) => ({ multi_factor_auth_enabled: true, multi_factor_auth_rules: rules });
  const postures: PostureSource = {
    methods: METHODS,
    accounts: new Map([
      ["u-alice", { options: on(staged), marker }],
      ["u-bob", { options: {} }],
      // Rules with the enabled flag unset apply, as in Keystone.
      ["u-carol", { options: { multi_factor_auth_rules: enforced }, marker }],
      ["u-dave", { options: on([["password", "totp"]]) }],
      ["u-erin", { options: {} }],
      ["u-=HYPERLINK(1)", { options: { ...on([["password", "totp"]]), multi_factor_auth_enabled: false } }],
      ["u-<b>x</b>", { options: on(staged), marker }],
    ]),
  };
  const rows = buildStatus(resources, keystone, ["frank"], postures);
  const posture = Object.fromEntries(rows.map((r) => [r.user, r.posture]));

  it("shows open, staged, enforced or own from each user's options and the tool's marker", () => {
    expect(posture).toEqual({
      alice: "staged",
      bob: "open",
      carol: "enforced",
      dave: "own",
      // No TOTP credential in Keystone: no code can log erin in; frank is not enrolled.
      erin: undefined,
      frank: undefined,
      "=HYPERLINK(1)": "open",
      "<b>x</b>": "staged",
    });
    expect(countStatus(rows, new Date("2027-01-20T00:00:00Z"), keystone).byPosture).toEqual({
      open: 2,
      staged: 2,
      enforced: 1,
      own: 1,
    });
    // The marker attribute is the one the client reads (the report does not name it itself).
    expect(MARKER_ATTRIBUTE).toBe("keystone_totp");
  });

  it("is empty without Keystone, and a column of the table", () => {
    expect(buildStatus(resources, undefined).every((r) => r.posture === undefined)).toBe(true);
    const table = formatTable(rows).split("\n");
    expect(table[0]).toMatch(/ MFA +POSTURE +KS /);
    expect(table.find((l) => l.startsWith("bob "))).toMatch(/ no +open +1 /);
    expect(table.find((l) => l.startsWith("erin "))).toMatch(/ no +- +0 /);
  });

  it("is a CSV column, with formula cells still neutralised", () => {
    const csv = statusCsv(rows).split("\r\n");
    const header = csv[0]?.split(",") ?? [];
    const col = header.indexOf("posture");
    expect(col).toBeGreaterThan(0);
    const cells = (name: string) => csv.find((l) => l.startsWith(name))?.split(",") ?? [];
    expect(cells("alice")[col]).toBe("staged");
    expect(cells("erin")[col]).toBe("");
    expect(cells("'=HYPERLINK(1)")[col]).toBe("open");
    expect(csv.some((l) => l.startsWith("=HYPERLINK"))).toBe(false);
  });

  it("is an HTML column that marks open users, with names still escaped", () => {
    const at = new Date("2027-01-20T00:00:00Z");
    const html = renderStatusHtml("status", rows, countStatus(rows, at, keystone), at);
    expect(html).toContain("<th>Login posture</th>");
    expect(html).toContain('<td class="p-open">Open: a TOTP code alone logs in</td>');
    expect(html).toContain('<td class="p-enforced">Enforced: password + TOTP</td>');
    expect(html).toContain("<b>2</b>TOTP alone logs in (open)");
    expect(html).not.toContain("<b>x</b>");
    expect(html).toContain(esc("<b>x</b>"));
  });
});
