/**
 * The command lines of the operator commands, parsed by node:util parseArgs: the options they
 * took before keep their meaning and defaults; unknown options and bad values are E_USAGE
 * errors naming the option (exit 64), before anything runs.
 */
import { resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { UsageError } from "../../../../lib/errors.ts";
import { parseDoctorArgs } from "../../../../scripts/doctor.ts";
import { parseProvisionArgs } from "../../../../scripts/provision.ts";
import { parseRotateArgs } from "../../../../scripts/rotate.ts";
import { parseShardsArgs } from "../../../../scripts/shards.ts";
import { parseStatusArgs } from "../../../../scripts/status.ts";
import { parseVerifyCodeArgs } from "../../../../scripts/verify-code.ts";

/** The message of the UsageError `f` throws. */
function usage(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error("no usage error");
}

const skipDoctorEnv = process.env.KEYSTONE_TOTP_SKIP_DOCTOR;
afterEach(() => {
  if (skipDoctorEnv === undefined) delete process.env.KEYSTONE_TOTP_SKIP_DOCTOR;
  else process.env.KEYSTONE_TOTP_SKIP_DOCTOR = skipDoctorEnv;
});

describe("provision", () => {
  it("keeps its defaults and accepts every option it took before", () => {
    const { verb, o } = parseProvisionArgs(["preview"], false);
    expect(verb).toBe("preview");
    expect(o).toMatchObject({ stack: "dev", configFile: undefined, yes: false, parallel: undefined, verbose: false });
    const up = parseProvisionArgs(
      [
        "up",
        "-s",
        "prod",
        "--config-file",
        "x.yaml",
        "-y",
        "--expect-no-changes",
        "--continue-on-error",
        "--diff",
        "--parallel",
        "4",
        "--skip-doctor",
        "-v",
        "--non-interactive",
        "--skip-preview",
      ],
      false,
    ).o;
    expect(up).toEqual({
      stack: "prod",
      configFile: resolve("x.yaml"),
      yes: true,
      expectNoChanges: true,
      continueOnError: true,
      diff: true,
      parallel: 4,
      skipDoctor: true,
      verbose: true,
      clearPendingCreates: false,
      force: false,
    });
    expect(parseProvisionArgs(["refresh", "--clear-pending-creates", "--yes"], false).o.clearPendingCreates).toBe(true);
    expect(parseProvisionArgs(["up", "--force", "--yes"], false).o.force).toBe(true);
    // Options may come before the verb now.
    expect(parseProvisionArgs(["--stack", "s", "preview"], false).verb).toBe("preview");
  });

  it("takes KEYSTONE_TOTP_SKIP_DOCTOR from the environment, as before", () => {
    process.env.KEYSTONE_TOTP_SKIP_DOCTOR = "1";
    expect(parseProvisionArgs(["preview"], false).o.skipDoctor).toBe(true);
  });

  it("refuses a missing or unknown verb, unknown options, bad values, and changes off a terminal without --yes", () => {
    expect(usage(() => parseProvisionArgs([], false))).toMatch(/^expected a verb: preview, up, refresh, destroy/);
    expect(usage(() => parseProvisionArgs(["apply"], false))).toMatch(/^unknown verb 'apply'/);
    expect(usage(() => parseProvisionArgs(["up", "--yse"], false))).toBe("unknown option '--yse'");
    expect(usage(() => parseProvisionArgs(["up", "--parallel", "0", "--yes"], false))).toBe(
      "--parallel needs a whole number from 1 to 1024, not '0'",
    );
    expect(usage(() => parseProvisionArgs(["up", "extra", "--yes"], false))).toBe("unexpected argument 'extra'");
    expect(usage(() => parseProvisionArgs(["destroy"], false))).toMatch(/pass --yes/);
    expect(parseProvisionArgs(["destroy"], true).o.yes).toBe(false);
  });
});

describe("rotate", () => {
  it("takes users or --all, --grace-hours and --preview", () => {
    const r = parseRotateArgs(["alice@Default", "bob", "--grace-hours", "0", "--yes"], false);
    expect(r).toMatchObject({ all: false, users: ["alice@Default", "bob"], graceHours: 0, preview: false });
    expect(parseRotateArgs(["--all", "--preview"], false)).toMatchObject({ all: true, users: [], preview: true });
    expect(parseRotateArgs(["--all", "--preview"], false).graceHours).toBeUndefined();
  });

  it("refuses bad grace hours, users with --all, neither, and a change off a terminal without --yes", () => {
    expect(usage(() => parseRotateArgs(["a", "--grace-hours", "1.5", "--yes"], false))).toBe(
      "--grace-hours needs a whole number from 0 to 8760, not '1.5'",
    );
    expect(usage(() => parseRotateArgs(["a", "--grace-hours", "8761", "--yes"], false))).toMatch(/from 0 to 8760/);
    expect(usage(() => parseRotateArgs(["a", "--all", "--yes"], false))).toBe("give users or --all, not both");
    expect(usage(() => parseRotateArgs(["--yes"], false))).toMatch(/^name the users to rotate/);
    expect(usage(() => parseRotateArgs(["--all"], false))).toMatch(/pass --yes/);
  });
});

describe("status", () => {
  it("keeps its defaults; the last of --json and --csv wins", () => {
    expect(parseStatusArgs([])).toEqual({
      stack: "dev",
      configFile: undefined,
      format: "table",
      html: undefined,
      keystone: true,
    });
    expect(parseStatusArgs(["--csv", "--json"]).format).toBe("json");
    expect(parseStatusArgs(["--json", "--csv"]).format).toBe("csv");
    expect(parseStatusArgs(["-s", "p", "--html", "r.html", "--no-keystone"])).toMatchObject({
      stack: "p",
      html: resolve("r.html"),
      keystone: false,
    });
  });

  it("refuses unknown options and missing values", () => {
    expect(usage(() => parseStatusArgs(["--yes"]))).toBe("unknown option '--yes'");
    expect(usage(() => parseStatusArgs(["--html"]))).toBe("--html needs a value");
  });
});

describe("doctor", () => {
  it("takes the relay and sender from the environment unless given", () => {
    const env = { KEYSTONE_TOTP_SMTP_URL: "smtp://relay.example:587", KEYSTONE_TOTP_MAIL_FROM: "ops@example.com" };
    expect(parseDoctorArgs([], env)).toMatchObject({
      smtpUrl: env.KEYSTONE_TOTP_SMTP_URL,
      mailFrom: "ops@example.com",
    });
    expect(parseDoctorArgs(["--smtp-url", "smtp://other:25", "--no-mail", "--json"], env)).toMatchObject({
      smtpUrl: "smtp://other:25",
      noMail: true,
      json: true,
    });
  });

  it("refuses unknown options and empty values", () => {
    expect(usage(() => parseDoctorArgs(["--csv", ""], {}))).toBe("--csv needs a value");
    expect(usage(() => parseDoctorArgs(["--smtp"], {}))).toBe("unknown option '--smtp'");
  });
});

describe("verify-code", () => {
  it("takes exactly USER@DOMAIN and CODE", () => {
    expect(parseVerifyCodeArgs(["ops@corp.example@Default", "123456"])).toEqual({
      who: "ops@corp.example@Default",
      code: "123456",
    });
    expect(usage(() => parseVerifyCodeArgs(["alice@Default"]))).toBe("expected USER@DOMAIN and CODE");
    expect(usage(() => parseVerifyCodeArgs(["--json", "a", "b"]))).toBe("unknown option '--json'");
  });
});

describe("shards", () => {
  it("keeps its defaults and passes provision's options on", () => {
    const o = parseShardsArgs(["preview", "--stack-prefix", "fleet", "--shards", "4"]);
    expect(o).toMatchObject({ verb: "preview", prefix: "fleet", shards: 4, concurrency: 1, reshard: false });
    expect(o.passthrough).toEqual([]);
    const up = parseShardsArgs([
      "up",
      "--stack-prefix",
      "fleet",
      "--shards",
      "2",
      "--yes",
      "--diff",
      "--parallel",
      "16",
      "--concurrency",
      "2",
    ]);
    expect(up.passthrough).toEqual(["--diff", "--parallel", "16"]);
    expect(up.concurrency).toBe(2);
  });

  it("refuses missing required options, bad numbers and a change without --yes", () => {
    expect(usage(() => parseShardsArgs(["preview", "--shards", "2"]))).toMatch(/^--stack-prefix is required/);
    expect(usage(() => parseShardsArgs(["preview", "--stack-prefix", "f"]))).toBe("--shards is required");
    expect(usage(() => parseShardsArgs(["preview", "--stack-prefix", "f", "--shards", "0"]))).toMatch(
      /^--shards needs a whole number from 1 to/,
    );
    expect(usage(() => parseShardsArgs(["up", "--stack-prefix", "f", "--shards", "2"]))).toMatch(/pass --yes/);
  });

  it("--only picks stacks by index and range, below --shards, never with --reshard", () => {
    const base = ["up", "--stack-prefix", "f", "--shards", "6", "--yes"];
    expect([...(parseShardsArgs([...base, "--only", "0,2-4"]).only ?? [])]).toEqual([0, 2, 3, 4]);
    expect(parseShardsArgs(base).only).toBeUndefined();
    expect(usage(() => parseShardsArgs([...base, "--only", "6"]))).toMatch(/^--only takes stack indexes from 0 to 5/);
    expect(usage(() => parseShardsArgs([...base, "--only", "3-1"]))).toMatch(/^--only takes/);
    expect(usage(() => parseShardsArgs([...base, "--only", "a"]))).toMatch(/^--only takes/);
    expect(usage(() => parseShardsArgs([...base, "--only", "0", "--reshard"]))).toMatch(
      /cannot be combined with --reshard/,
    );
  });
});
