/**
 * An in-process Keystone double holding TOTP credentials in memory, for fast unit tests of
 * the handlers' logic and error paths. It is never the evidence that a feature works: the
 * e2e tests run against a real Keystone.
 */
import { KeystoneError } from "../../lib/errors.ts";
import type { KeystoneClient } from "../../lib/keystone/client.ts";

/** How the double behaves. */
export interface FakeKeystoneOptions {
  /** false: reads omit TOTP blobs, as Keystone 30 (2026.2) and later do. Default true. */
  readonly returnsBlobs?: boolean;
}

/** A Keystone holding TOTP credentials in memory; records deletions. */
export function fakeKeystone(initial: Record<string, string[]> = {}, opts: FakeKeystoneOptions = {}) {
  const shown = <C extends { blob: string }>(c: C) =>
    opts.returnsBlobs === false
      ? { ...c, blob: undefined, type: "totp", projectId: undefined }
      : { ...c, type: "totp", projectId: undefined };
  /** `marker` is the credential's keystone_totp attribute (the tool's tag), as Keystone keeps it. */
  const creds = new Map<string, { id: string; userId: string; blob: string; marker?: unknown }>();
  let n = 0;
  for (const [userId, ids] of Object.entries(initial)) for (const id of ids) creds.set(id, { id, userId, blob: "X" });
  const deleted: string[] = [];
  let failDeletes = false;
  /** Users' options and keystone-totp marker, as PATCHed; a user never written has none. */
  const users = new Map<string, { options: Record<string, unknown>; marker: unknown }>();
  /** Every MFA write, in order: what a test asserts about rules before credentials. */
  const writes: { userId: string; options: unknown; marker: unknown; credentialsAtWrite: number }[] = [];
  const client = {
    /** The operator the double's token belongs to: no test user has this ID. */
    whoami: async () => ({
      userId: "operator-id",
      projectId: "p",
      roles: ["admin"],
      expiresAtMs: Date.now() + 3_600_000,
    }),
    authMethods: async () => ["password", "token", "totp", "application_credential"],
    getUser: async (id: string) => {
      const u = users.get(id) ?? { options: {}, marker: undefined };
      return { id, name: id, domainId: "default", email: undefined, enabled: true, ...u };
    },
    writeUserMfa: async (
      userId: string,
      o: { enabled: boolean | null; rules: readonly (readonly string[])[] | null },
      marker: unknown,
    ) => {
      const options: Record<string, unknown> = {};
      if (o.enabled !== null) options.multi_factor_auth_enabled = o.enabled;
      if (o.rules !== null) options.multi_factor_auth_rules = o.rules;
      users.set(userId, { options, marker: marker ?? undefined });
      writes.push({
        userId,
        options,
        marker,
        credentialsAtWrite: [...creds.values()].filter((c) => c.userId === userId).length,
      });
      return client.getUser(userId);
    },
    listTotpCredentials: async (userId: string) => [...creds.values()].filter((c) => c.userId === userId).map(shown),
    listAllTotpCredentials: async () => {
      const m = new Map<string, { id: string }[]>();
      for (const c of creds.values()) m.set(c.userId, [...(m.get(c.userId) ?? []), c]);
      return { all: m, of: async (userId: string) => m.get(userId) ?? [] };
    },
    createTotpCredential: async (userId: string, blob: string, marker?: unknown) => {
      const c = { id: `new${++n}`, userId, blob, ...(marker === undefined ? {} : { marker }) };
      creds.set(c.id, c);
      return { ...c, type: "totp", projectId: undefined };
    },
    updateCredentialBlob: async (id: string, blob: string) => {
      const c = creds.get(id);
      if (!c) throw new Error("gone");
      c.blob = blob;
      return { ...c, type: "totp", projectId: undefined };
    },
    getCredential: async (id: string) => {
      const c = creds.get(id);
      return c ? shown(c) : undefined;
    },
    deleteCredential: async (id: string) => {
      if (failDeletes) {
        // As the real client fails once its retries are spent.
        throw new KeystoneError(
          "E_KEYSTONE_HTTP",
          { method: "DELETE", path: `/v3/credentials/${id}`, status: 503, attempts: 6 },
          "Keystone is unavailable: run again later",
        );
      }
      deleted.push(id);
      return creds.delete(id);
    },
  };
  return {
    client: client as unknown as KeystoneClient,
    ids: (userId: string) => [...creds.values()].filter((c) => c.userId === userId).map((c) => c.id),
    /** Stores a credential as another run (or an operator) left it. */
    put: (c: { id: string; userId: string; blob: string; marker?: unknown }) => {
      creds.set(c.id, { ...c });
    },
    /** What a user holds, as the client lists it. */
    held: (userId: string) => [...creds.values()].filter((c) => c.userId === userId).map(shown),
    /** The secret Keystone holds (what a login checks), whatever reads return. */
    secretOf: (id: string) => creds.get(id)?.blob,
    deleted,
    writes,
    options: (userId: string) => users.get(userId)?.options ?? {},
    failDeletes: (v: boolean) => {
      failDeletes = v;
    },
  };
}
