/**
 * On/off settings given as text (environment variables, stack config read as strings).
 */

/**
 * Whether a text setting is on: `1`, `true`, `yes` or `on`, in any case, spaces around ignored.
 * Anything else, and an absent setting, is off: a typo never turns a safety switch on.
 */
export function isOn(value: string | undefined): boolean {
  return value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());
}
