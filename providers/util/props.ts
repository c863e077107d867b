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
