/**
 * Helpers for property bags crossing the engine boundary.
 */

/**
 * Drops `undefined` values: the engine's wire format (protobuf Struct) has no undefined, and
 * a provider result holding one fails with "Unexpected struct type".
 */
export function defined<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}

/**
 * Whether two property values are the same as the engine stores them: compared as JSON, with
 * `undefined` and `null` alike (a property left out and one sent as null mean the same).
 */
export function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}
