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

/**
 * A value with its object keys sorted, at every depth, for comparing JSON from Keystone: it
 * returns a user's options in the order its database rows come, which changes between reads.
 */
export function sortedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedKeys);
  if (v === null || typeof v !== "object") return v;
  const o = v as Record<string, unknown>;
  return Object.fromEntries(
    Object.keys(o)
      .sort()
      .map((k) => [k, sortedKeys(o[k])]),
  );
}
