/**
 * Property tests of the secret and URI functions: for any input they return a value or throw
 * one of our typed errors, never anything else, and what they accept round-trips.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KeystoneTotpError } from "../../../../lib/errors.ts";
import { normaliseSecret } from "../../../../lib/totp/secret.ts";
import { otpauthUri, parseOtpauthUri } from "../../../../lib/totp/uri.ts";

const RUNS = 500;
/** Any UTF-16 code unit, lone surrogates included (spreadsheets and APIs do produce them). */
const anyUnit = fc.nat(0xffff).map((n) => String.fromCharCode(n));
const base32 = fc.string({
  unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".split("")),
  minLength: 26,
  maxLength: 64,
});

describe("normaliseSecret (property)", () => {
  it("returns canonical base32 or throws E_SECRET, for any string", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300, unit: anyUnit }), (s) => {
        try {
          const out = normaliseSecret(s);
          expect(out).toMatch(/^[A-Z2-7]+$/);
          expect([1, 3, 6]).not.toContain(out.length % 8);
          expect(Math.floor((out.length * 5) / 8) * 8).toBeGreaterThanOrEqual(128);
        } catch (e) {
          expect(e).toBeInstanceOf(KeystoneTotpError);
          expect((e as KeystoneTotpError).code).toBe("E_SECRET");
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("is idempotent and ignores case, spaces and padding", () => {
    fc.assert(
      fc.property(
        base32.filter((s) => ![1, 3, 6].includes(s.length % 8)),
        (s) => {
          const messy = `${s.toLowerCase().replace(/(.{4})/g, "$1 ")}===`;
          expect(normaliseSecret(messy)).toBe(s);
          expect(normaliseSecret(normaliseSecret(s))).toBe(s);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe("otpauthUri (property)", () => {
  it("round-trips any issuer and account an app could show, or throws E_INPUT", () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 140, unit: anyUnit }),
        fc.string({ maxLength: 140, unit: anyUnit }),
        base32,
        (issuer, account, secret) => {
          let uri: string;
          try {
            uri = otpauthUri({ issuer, account, secret });
          } catch (e) {
            expect(e).toBeInstanceOf(KeystoneTotpError);
            expect((e as KeystoneTotpError).code).toBe("E_INPUT");
            return;
          }
          const p = parseOtpauthUri(uri);
          expect(p).toEqual({
            issuer: issuer.trim(),
            account: account.trim(),
            secret,
            algorithm: "SHA1",
            digits: 6,
            period: 30,
          });
          // nothing outside the URI-safe set reaches the QR code
          expect(uri).toMatch(/^[\x21-\x7e]+$/);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("parseOtpauthUri throws only our typed error for any string", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300, unit: anyUnit }), (s) => {
        try {
          parseOtpauthUri(s);
        } catch (e) {
          expect(e).toBeInstanceOf(KeystoneTotpError);
        }
      }),
      { numRuns: RUNS },
    );
  });
});
