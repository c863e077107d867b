/**
 * QR codes of `otpauth://` URIs as PNG images, for the enrollment message.
 *
 * The text encoded is a secret (the URI carries the TOTP key), so nothing here logs it or puts
 * it in an error message.
 */
import { crc32, deflateSync } from "node:zlib";
import QRCode from "qrcode";
import { InputError } from "./errors.ts";

/**
 * Error correction level M restores about 15 % of damaged modules: enough for a photo of a
 * screen or a crumpled print-out, while keeping a 200-character URI at a version (size) that
 * phone cameras resolve easily.
 */
export const QR_ERROR_CORRECTION = "M";
/** Width of the blank border around the code, in modules; ISO/IEC 18004 asks for 4. */
export const QR_QUIET_ZONE_MODULES = 4;
/** The side of the image aimed at, in pixels; the real side is within a module or so of it. */
export const QR_TARGET_SIDE_PX = 280;
/** The fewest pixels per module, so that long URIs stay sharp at the cost of a larger image. */
export const QR_MIN_MODULE_PX = 3;
/** The most characters a version-40 code holds at level M (byte mode); longer text cannot be encoded. */
export const QR_MAX_CHARS = 2331;

/** The eight bytes every PNG file starts with (PNG, 5.2). */
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** One bit per pixel: a QR code has two colours, so the raw image is an eighth of 8-bit grayscale's. */
const PNG_BIT_DEPTH = 1;
/** PNG colour type 0: grayscale (with one bit per pixel, 0 black and 1 white). */
const PNG_COLOR_GRAYSCALE = 0;
/** PNG filter type 2 ("Up", PNG 9.2): a row repeating the one above becomes zeros, which compress best. */
const PNG_FILTER_UP = 2;
/** zlib's best compression: tens of microseconds more on an image this small, for a smaller attachment. */
const PNG_DEFLATE_LEVEL = 9;

/** Pixels per module: a whole number, so every module is drawn the same size with crisp edges. */
function moduleScale(modules: number): number {
  const side = modules + 2 * QR_QUIET_ZONE_MODULES;
  return Math.max(QR_MIN_MODULE_PX, Math.round(QR_TARGET_SIDE_PX / side));
}

/** Builds the symbol, refusing text no QR code can hold without echoing it. */
function createSymbol(text: string): QRCode.QRCode {
  if (typeof text !== "string" || text.length === 0) {
    throw new InputError("text", "there is nothing to encode in the QR code");
  }
  // Without an ECI header (which qrcode cannot write) readers guess the charset of non-ASCII
  // bytes, and zbar and some phone apps guess Shift JIS: percent-encoded URIs are read alike.
  if (!/^[\x20-\x7e]*$/.test(text)) {
    throw new InputError("text", "QR code text must be printable ASCII; percent-encode other characters");
  }
  if (text.length > QR_MAX_CHARS) {
    throw new InputError(
      "text",
      `the text is too long for a QR code (${text.length} characters, at most ${QR_MAX_CHARS})`,
    );
  }
  return QRCode.create(text, { errorCorrectionLevel: QR_ERROR_CORRECTION });
}

/**
 * The side in pixels of the PNG that {@link qrPng} makes for `text` (the image is square), for
 * `width`/`height` attributes.
 *
 * @throws {InputError} `E_INPUT` for text {@link qrPng} refuses.
 */
export function qrPngSize(text: string): number {
  const modules = createSymbol(text).modules.size;
  return (modules + 2 * QR_QUIET_ZONE_MODULES) * moduleScale(modules);
}

/**
 * Renders `text` (printable ASCII) as a black-on-white QR code PNG: error correction level
 * {@link QR_ERROR_CORRECTION}, a quiet zone of {@link QR_QUIET_ZONE_MODULES} modules and a
 * whole number of pixels per module, about {@link QR_TARGET_SIDE_PX} pixels a side.
 *
 * @param text - what the code holds, e.g. an `otpauth://totp/` URI. Never logged.
 * @returns the PNG file's bytes.
 * @throws {InputError} `E_INPUT` if the text is empty, longer than {@link QR_MAX_CHARS}
 *   characters, or not printable ASCII (readers disagree on other charsets). The message never
 *   repeats the text.
 */
export async function qrPng(text: string): Promise<Buffer> {
  return pngOf(createSymbol(text).modules);
}

/** One PNG chunk (PNG, 5.3): length, type, data, and the CRC-32 of type and data. */
function pngChunk(type: string, data: Buffer): Buffer {
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write(type, 4, "latin1");
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  return chunk;
}

/**
 * The PNG of a QR symbol's modules, drawn here rather than by qrcode's renderer: that one draws
 * an RGBA bitmap pixel by pixel, which pngjs then reads back pixel by pixel and compresses, and
 * builds the symbol again first; it was most of a provider's CPU in a first enrollment (bench
 * profile). The image: black modules on white, the quiet zone around them, each module a square
 * of {@link moduleScale} pixels, one bit per pixel, every row filtered "Up".
 */
function pngOf(modules: QRCode.BitMatrix): Buffer {
  const scale = moduleScale(modules.size);
  const side = (modules.size + 2 * QR_QUIET_ZONE_MODULES) * scale;
  const rowBytes = Math.ceil(side / 8);
  // The pixels of each row of modules (and of the quiet zone: all white), drawn once.
  const white = Buffer.alloc(rowBytes, 0xff);
  const rows: Buffer[] = [];
  for (let r = 0; r < modules.size; r++) {
    const row = Buffer.from(white);
    for (let c = 0; c < modules.size; c++) {
      if (!modules.get(r, c)) continue;
      const x0 = (c + QR_QUIET_ZONE_MODULES) * scale;
      for (let x = x0; x < x0 + scale; x++) row[x >> 3] = (row[x >> 3] as number) & ~(0x80 >> (x & 7));
    }
    rows.push(row);
  }
  const raw = Buffer.alloc((rowBytes + 1) * side);
  let above: Buffer = Buffer.alloc(rowBytes); // The row above the first is all zeros (PNG, 9.2).
  for (let y = 0; y < side; y++) {
    const r = Math.floor(y / scale) - QR_QUIET_ZONE_MODULES;
    const row = rows[r] ?? white;
    const at = y * (rowBytes + 1);
    raw[at] = PNG_FILTER_UP;
    for (let i = 0; i < rowBytes; i++) raw[at + 1 + i] = ((row[i] as number) - (above[i] as number)) & 0xff;
    above = row;
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0);
  header.writeUInt32BE(side, 4);
  header[8] = PNG_BIT_DEPTH;
  header[9] = PNG_COLOR_GRAYSCALE;
  // header[10..12]: compression 0 (deflate), filter method 0, no interlace.
  return Buffer.concat([
    PNG_SIGNATURE,
    pngChunk("IHDR", header),
    pngChunk("IDAT", deflateSync(raw, { level: PNG_DEFLATE_LEVEL })),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

/** The prefix of a PNG `data:` URI (RFC 2397), as `<img src>` takes it. */
export const PNG_DATA_URI_PREFIX = "data:image/png;base64,";

/**
 * {@link qrPng} as a `data:image/png;base64,` URI, for an `<img src>` in a web page or an HTML
 * message. It holds the text (for an `otpauth://` URI, the TOTP secret): treat it as a secret.
 *
 * @param text - what the code holds. Never logged.
 * @throws {InputError} `E_INPUT` for text {@link qrPng} refuses.
 */
export async function qrPngDataUri(text: string): Promise<string> {
  return `${PNG_DATA_URI_PREFIX}${(await qrPng(text)).toString("base64")}`;
}
