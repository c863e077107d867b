/**
 * QR codes of `otpauth://` URIs as PNG images, for the enrollment message.
 *
 * The text encoded is a secret (the URI carries the TOTP key), so nothing here logs it or puts
 * it in an error message.
 */
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

/** PNG filter type 2 ("Up", RFC 2083 6.3): QR rows repeat, so it compresses best. */
const PNG_FILTER_UP = 2;
/** PNG color type 0: grayscale, one byte per pixel. */
const PNG_COLOR_GRAYSCALE = 0;
/** zlib's best compression: a few hundred microseconds more for a smaller attachment. */
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
  const symbol = createSymbol(text);
  // Passed through to pngjs, which writes into it: a fresh object per call. An 8-bit grayscale
  // image with the "Up" filter is a third the size of the default RGBA one and 3x faster to make.
  const rendererOpts = { deflateLevel: PNG_DEFLATE_LEVEL, filterType: PNG_FILTER_UP, colorType: PNG_COLOR_GRAYSCALE };
  return QRCode.toBuffer(text, {
    type: "png",
    errorCorrectionLevel: QR_ERROR_CORRECTION,
    // The symbol is built again for rendering; reusing the mask chosen skips the costly search.
    version: symbol.version,
    ...(symbol.maskPattern !== undefined ? { maskPattern: symbol.maskPattern } : {}),
    margin: QR_QUIET_ZONE_MODULES,
    scale: moduleScale(symbol.modules.size),
    color: { dark: "#000000ff", light: "#ffffffff" },
    rendererOpts,
  });
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
