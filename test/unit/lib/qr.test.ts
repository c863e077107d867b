import { PNG } from "pngjs";
import QRCode from "qrcode";
import { describe, expect, it } from "vitest";
import { InputError } from "../../../lib/errors.ts";
import {
  PNG_DATA_URI_PREFIX,
  QR_ERROR_CORRECTION,
  QR_MAX_CHARS,
  QR_QUIET_ZONE_MODULES,
  QR_TARGET_SIDE_PX,
  qrPng,
  qrPngDataUri,
  qrPngSize,
} from "../../../lib/qr.ts";
import { generateSecret } from "../../../lib/totp/secret.ts";
import { otpauthUri, parseOtpauthUri } from "../../../lib/totp/uri.ts";
import { registerSecrets } from "../../support/secrets.ts";
import { decodeQrPng } from "../../support/smtp.ts";

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Width and height from the PNG's IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

describe("qrPng", () => {
  const secret = generateSecret();
  registerSecrets(secret);

  it.each([
    ["plain", "ACME Cloud", "alice@Default"],
    ["non-ASCII", "Ünï Cloud 東京", "Zoë Müller-Łukasz@Département"],
    ["spaces and punctuation", "ACME Cloud & Co (prod)", "O'Brien / ops+on-call @ Default?#%"],
    ["longest labels", "I".repeat(128), "a".repeat(128)],
  ])("encodes a %s otpauth URI that zbarimg decodes back exactly", async (_name, issuer, account) => {
    const uri = otpauthUri({ issuer, account, secret });
    const png = await qrPng(uri);
    expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    const decoded = decodeQrPng(png);
    expect(decoded === uri).toBe(true);
    // What an app reads from the code is the entry intended.
    expect(parseOtpauthUri(decoded)).toMatchObject({ issuer, account, secret });
  });

  it("uses level M and a quiet zone of 4 modules, about 280 px for a typical URI", async () => {
    expect(QR_ERROR_CORRECTION).toBe("M");
    expect(QR_QUIET_ZONE_MODULES).toBe(4);
    const uri = otpauthUri({ issuer: "ACME Cloud", account: "alice@Default", secret });
    const png = await qrPng(uri);
    const { width, height } = pngSize(png);
    expect(width).toBe(height);
    expect(width).toBe(qrPngSize(uri));
    expect(width).toBeGreaterThanOrEqual(250);
    expect(width).toBeLessThanOrEqual(300);
    // The side is a whole number of pixels per module over the symbol plus both quiet zones.
    const modules = QRCode.create(uri, { errorCorrectionLevel: "M" }).modules.size;
    expect(width % (modules + 2 * QR_QUIET_ZONE_MODULES)).toBe(0);
    expect(Math.abs(width - QR_TARGET_SIDE_PX)).toBeLessThan(modules + 2 * QR_QUIET_ZONE_MODULES);
  });

  it("draws every module of the symbol, black on white, a whole square of pixels each, inside a white quiet zone", async () => {
    const uri = otpauthUri({ issuer: "ACME Cloud", account: "alice@Default", secret });
    const png = await qrPng(uri);
    // Another decoder than zbarimg: pngjs reads the pixels back (as RGBA).
    const image = PNG.sync.read(png);
    const symbol = QRCode.create(uri, { errorCorrectionLevel: "M" }).modules;
    const scale = image.width / (symbol.size + 2 * QR_QUIET_ZONE_MODULES);
    expect(Number.isInteger(scale)).toBe(true);
    const dark = (x: number, y: number) => {
      const i = (y * image.width + x) * 4;
      const [r, g, b, a] = [image.data[i], image.data[i + 1], image.data[i + 2], image.data[i + 3]];
      expect([r, g, b, a], `pixel ${x},${y}`).toSatisfy(
        (p: number[]) => p[3] === 255 && p.slice(0, 3).every((v) => v === p[0]) && (p[0] === 0 || p[0] === 255),
      );
      return r === 0;
    };
    const mismatches: string[] = [];
    for (let y = 0; y < image.height; y++) {
      for (let x = 0; x < image.width; x++) {
        const row = Math.floor(y / scale) - QR_QUIET_ZONE_MODULES;
        const col = Math.floor(x / scale) - QR_QUIET_ZONE_MODULES;
        const inside = row >= 0 && row < symbol.size && col >= 0 && col < symbol.size;
        if (dark(x, y) !== (inside && symbol.get(row, col) === 1)) mismatches.push(`${x},${y}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it("keeps a long URI decodable at a larger size", async () => {
    const text = `otpauth://totp/x?secret=${"A".repeat(1500)}`;
    const png = await qrPng(text);
    expect(pngSize(png).width).toBeGreaterThan(300);
    expect(decodeQrPng(png) === text).toBe(true);
  });

  it.each([
    ["empty", ""],
    ["too long", "x".repeat(QR_MAX_CHARS + 1)],
    ["non-ASCII (readers guess its charset)", "otpauth://totp/Zoë?secret=AAAA"],
    ["a line break", "otpauth://totp/a\nb"],
  ])("refuses %s text without repeating it", async (_name, text) => {
    const err = await qrPng(text).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).code).toBe("E_INPUT");
    if (text.length > 0) expect((err as Error).message).not.toContain(text);
  });
});

describe("qrPngDataUri", () => {
  it("is the PNG of qrPng as a data: URI that an <img src> takes, decoding back to the URI", async () => {
    const secret = generateSecret();
    registerSecrets(secret);
    const uri = otpauthUri({ issuer: "ACME Cloud", account: "alice@Default", secret });
    const dataUri = await qrPngDataUri(uri);
    expect(dataUri.startsWith(PNG_DATA_URI_PREFIX)).toBe(true);
    const png = Buffer.from(dataUri.slice(PNG_DATA_URI_PREFIX.length), "base64");
    expect(png.equals(await qrPng(uri))).toBe(true);
    expect(decodeQrPng(png) === uri).toBe(true);
  });
});
