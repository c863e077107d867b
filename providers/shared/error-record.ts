/**
 * What the resources record of a failure in their outputs (a failed retirement, a delivery
 * whose outcome is unknown): our error code apart, and the message without it, cut to a length
 * a state can carry (Keystone's and the mail server's text can be long). Never a secret: the
 * messages of our errors carry none.
 */
import { EngineBoundaryError, KeystoneTotpError } from "../../lib/errors.ts";

/** Most characters of an error's message kept in a resource's outputs. */
export const MAX_ERROR_CHARS = 500;

/**
 * The code and the message of `e`, as recorded.
 *
 * @param fallbackCode - the code recorded when `e` is not one of our errors
 */
export function errorRecord(e: unknown, fallbackCode: string): { code: string; error: string };
export function errorRecord(e: unknown): { code?: string; error: string };
export function errorRecord(e: unknown, fallbackCode?: string): { code?: string; error: string } {
  const code = e instanceof KeystoneTotpError ? e.code : fallbackCode;
  // The code travels apart: an error on its way across the engine gives its own message.
  const text = e instanceof EngineBoundaryError ? e.reason : e instanceof Error ? e.message : String(e);
  const error = text.slice(0, MAX_ERROR_CHARS);
  return code ? { code, error } : { error };
}
