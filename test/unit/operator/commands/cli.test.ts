import { afterEach, describe, expect, it, vi } from "vitest";
import { ConfigError, EXIT, KeystoneError, UsageError, withErrorCodes } from "../../../../lib/errors.ts";
import {
  formatFailure,
  parseCommandLine,
  runCommand,
  wantsHelp,
  wholeNumberOption,
} from "../../../../operator/commands/cli.ts";

const OPTIONS = {
  stack: { type: "string", short: "s" },
  yes: { type: "boolean", short: "y" },
} as const;
const SPEC = { name: "cmd", help: "usage: cmd [options]\n" };

/** The UsageError a command line raises, or a failure of the test. */
function usageOf(argv: string[], positionals: [number, number] = [0, 0]): UsageError {
  try {
    parseCommandLine({ options: OPTIONS, positionals, positionalsName: "NAME" }, argv);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return e as UsageError;
  }
  throw new Error(`no usage error for ${argv.join(" ")}`);
}

describe("parseCommandLine", () => {
  it("parses long, short and --name=value forms; the last of a repeated option wins", () => {
    const r = parseCommandLine({ options: OPTIONS, positionals: [0, 2] }, ["-s", "a", "--stack=b", "-y", "x"]);
    expect(r.values.stack).toBe("b");
    expect(r.values.yes).toBe(true);
    expect(r.positionals).toEqual(["x"]);
  });

  it("names an unknown option, long or short", () => {
    expect(usageOf(["--bogus"]).message).toBe("unknown option '--bogus'");
    expect(usageOf(["--bogus"]).option).toBe("--bogus");
    expect(usageOf(["-q"]).message).toBe("unknown option '-q'");
  });

  it("names an option without its value, or with a value it does not take", () => {
    expect(usageOf(["--stack"]).message).toBe("--stack needs a value");
    expect(usageOf(["-s"]).message).toBe("--stack needs a value");
    expect(usageOf(["--yes=1"]).message).toBe("--yes takes no value");
    // `--stack --yes` would silently make a stack named "--yes".
    expect(usageOf(["--stack", "--yes"]).message).toMatch(/^--stack needs a value \(to give one starting with '-'/);
  });

  it("refuses too many or too few arguments", () => {
    expect(usageOf(["a"]).message).toBe("unexpected argument 'a'");
    expect(usageOf(["a", "b", "c"], [1, 2]).message).toBe("unexpected argument 'c'");
    expect(usageOf([], [1, 1]).message).toBe("expected NAME");
  });

  it("every usage error has code E_USAGE and exit code 64", () => {
    const e = usageOf(["--bogus"]);
    expect(e.code).toBe("E_USAGE");
    expect(EXIT.usage).toBe(64);
  });
});

describe("wholeNumberOption", () => {
  it("takes whole numbers within bounds and names the option otherwise", () => {
    expect(wholeNumberOption("--parallel", "8", 1, 1024)).toBe(8);
    expect(wholeNumberOption("--grace-hours", "0", 0, 8760)).toBe(0);
    for (const bad of ["0", "1025", "1.5", "-1", "", "x", "1e3", "0x10"]) {
      expect(() => wholeNumberOption("--parallel", bad, 1, 1024)).toThrow(
        `--parallel needs a whole number from 1 to 1024, not '${bad}'`,
      );
    }
  });
});

describe("wantsHelp", () => {
  it("finds --help or -h anywhere before a --", () => {
    expect(wantsHelp(["up", "--bogus", "--help"])).toBe(true);
    expect(wantsHelp(["-h"])).toBe(true);
    expect(wantsHelp(["up"])).toBe(false);
    expect(wantsHelp(["--", "--help"])).toBe(false);
  });
});

describe("formatFailure", () => {
  it("prints our errors as one line with their code, once, and the help after a usage error", () => {
    expect(formatFailure(SPEC, new ConfigError("keystone-totp:x must be true or false, not 'maybe'"))).toBe(
      "cmd: [E_CONFIG] keystone-totp:x must be true or false, not 'maybe'\n",
    );
    expect(formatFailure(SPEC, new UsageError("unknown option '--x'"))).toBe(
      `cmd: [E_USAGE] unknown option '--x'\n\n${SPEC.help}`,
    );
  });

  it("does not repeat a code that an error already carries from the engine boundary", async () => {
    const failing = withErrorCodes(async () => {
      throw new KeystoneError("E_KEYSTONE_HTTP", { method: "GET", path: "/v3/users", status: 503 }, "Try again.");
    });
    const e = await failing().catch((x: unknown) => x);
    expect(formatFailure(SPEC, e)).toBe("cmd: [E_KEYSTONE_HTTP] GET /v3/users failed: 503. Try again.\n");
  });

  it("shows a stack trace, with causes, only when asked (DEBUG)", () => {
    const e = new ConfigError("bad setting", { cause: new Error("inner reason") });
    expect(formatFailure(SPEC, e)).not.toMatch(/\n\s+at /);
    expect(formatFailure(SPEC, e)).not.toMatch(/inner reason/);
    const debug = formatFailure(SPEC, e, true);
    expect(debug).toMatch(/\n\s+at /);
    expect(debug).toMatch(/caused by: Error: inner reason/);
  });

  it("calls anything else an unexpected error, without its stack", () => {
    expect(formatFailure(SPEC, new TypeError("x is undefined"))).toBe("cmd: unexpected error: x is undefined\n");
  });
});

describe("runCommand", () => {
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = undefined;
  });

  function capture() {
    const out: string[] = [];
    const err: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((c) => {
      out.push(String(c));
      return true;
    });
    vi.spyOn(process.stderr, "write").mockImplementation((c) => {
      err.push(String(c));
      return true;
    });
    return { out, err };
  }

  it("exits with main's result, and with the table's code for what main throws", async () => {
    const cases: [unknown, number][] = [
      [new UsageError("unknown option '--x'"), 64],
      [new ConfigError("bad"), 2],
      [new KeystoneError("E_KEYSTONE_NETWORK", { method: "GET", path: "/v3" }, "Check the URL."), 3],
      [new Error("bug"), 1],
    ];
    for (const [thrown, code] of cases) {
      const { err } = capture();
      await runCommand(SPEC, async () => {
        throw thrown;
      }, []);
      expect(process.exitCode).toBe(code);
      expect(err.join("")).toMatch(/^cmd: /);
      vi.restoreAllMocks();
    }
    capture();
    await runCommand(SPEC, async () => 1, []);
    expect(process.exitCode).toBe(1);
  });

  it("prints the help on stdout for --help, without running main", async () => {
    const { out } = capture();
    const main = vi.fn(async () => 3);
    await runCommand(SPEC, main, ["up", "--help"]);
    expect(out.join("")).toBe(SPEC.help);
    expect(main).not.toHaveBeenCalled();
    expect(process.exitCode).toBe(0);
  });
});
