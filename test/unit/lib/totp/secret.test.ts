import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { SecretError } from "../../../../lib/errors.ts";
import {
  fingerprint,
  generateSecret,
  groupSecret,
  MIN_SECRET_BITS,
  normaliseSecret,
  totpCode,
} from "../../../../lib/totp/secret.ts";

describe("generateSecret", () => {
  it("gives 160 bits as 32 upper-case base32 characters without padding", () => {
    const s = generateSecret();
    expect(s).toMatch(/^[A-Z2-7]{32}$/);
  });

  it("does not repeat itself", () => {
    const seen = new Set(Array.from({ length: 200 }, () => generateSecret()));
    expect(seen.size).toBe(200);
  });
});

describe("normaliseSecret", () => {
  const good = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

  it("removes spaces, hyphens and padding and upper-cases", () => {
    expect(normaliseSecret("jbsw y3dp-ehpk 3pxp jbsw y3dp ehpk 3pxp")).toBe(good);
    expect(normaliseSecret(`${good.slice(0, 26)}======`)).toBe(good.slice(0, 26));
  });

  it.each([
    ["non-base32 characters", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PX1"],
    ["punctuation", "NOT-BASE32!!NOT-BASE32!!NOT-BASE32"],
    ["fewer than 128 bits", "JBSWY3DPEHPK3PXP"],
    ["an impossible length", "JBSWY3DPEHPK3PXPJBSWY3DPEHP"],
    ["nothing", "   "],
  ])("refuses %s without echoing the secret", (_what, input) => {
    let err: unknown;
    try {
      normaliseSecret(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SecretError);
    expect((err as SecretError).code).toBe("E_SECRET");
    const compact = input.replace(/[\s-]/g, "");
    if (compact.length >= 8) expect((err as Error).message).not.toContain(compact.slice(0, 8));
  });

  it(`accepts exactly ${MIN_SECRET_BITS} bits (26 characters)`, () => {
    expect(normaliseSecret("A".repeat(26))).toHaveLength(26);
    expect(() => normaliseSecret("A".repeat(25))).toThrow(SecretError);
  });
});

describe("totpCode", () => {
  it("matches RFC 6238's SHA1 test vectors (6 digits)", () => {
    // RFC 6238 appendix B: key "12345678901234567890" (ASCII), base32 below.
    const key = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    expect(totpCode(key, 59_000)).toBe("287082");
    expect(totpCode(key, 1_111_111_109_000)).toBe("081804");
    expect(totpCode(key, 2_000_000_000_000)).toBe("279037");
  });

  it("agrees with oathtool, an independent implementation (required: scripts/keystone.sh install puts it there)", () => {
    const s = generateSecret();
    const at = Date.now();
    let oath: string;
    try {
      oath = execFileSync("oathtool", ["--totp", "-b", `--now=@${Math.floor(at / 1000)}`, s], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      }).trim();
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { status?: number; stderr?: string };
      // A missing tool is a failure, not a skip: without it this test would prove nothing.
      if (err.code === "ENOENT") {
        throw new Error("oathtool is not installed: apt-get install -y oathtool (or bash scripts/keystone.sh install)");
      }
      throw new Error(`oathtool failed (exit ${err.status ?? "?"}): ${String(err.stderr ?? "").trim()}`);
    }
    expect(oath).toMatch(/^\d{6}$/);
    expect(totpCode(s, at)).toBe(oath);
  });
});

describe("fingerprint and grouping", () => {
  it("fingerprints without revealing the secret", () => {
    const s = generateSecret();
    const f = fingerprint(s);
    expect(f).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(f).not.toContain(s.slice(0, 6));
    expect(fingerprint(s)).toBe(f);
    expect(fingerprint(generateSecret())).not.toBe(f);
  });

  it("groups the key in fours for typing", () => {
    expect(groupSecret("ABCDEFGHIJ")).toBe("ABCD EFGH IJ");
  });
});
