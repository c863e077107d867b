/**
 * TOTP credentials (`/v3/credentials` of type `totp`): list, read, create, update, delete.
 *
 * - `POST /v3/credentials` is not blindly retried: after an ambiguous failure (reset, timeout,
 *   5xx) the user's credentials are searched for the one this call created (by its tag, and by
 *   its blob where Keystone still returns blobs) first, so a retry never leaves a duplicate.
 * - The blob is the secret: it is redacted from every error built from a request that holds it.
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/#credentials
 */
import { KeystoneError } from "../errors.ts";
import { MARKER_ATTRIBUTE, sameTag, tagOf } from "../ownership.ts";
import { asRecord, type KeystoneSession, truncatedError } from "./session.ts";

/**
 * Statuses a create answers itself instead of failing at once: 429 (wait, then send again)
 * and 5xx (Keystone may have stored the credential before failing: look before sending again).
 */
const CREATE_RETRY_STATUS: readonly number[] = [429, 500, 502, 503, 504];

/**
 * Times a credentials list is sent when Keystone answers it 404. Keystone 22 (`_list_credentials`
 * in keystone/api/credentials.py; 27 and 30 no longer do) reads each listed credential again by
 * its ID, and one deleted in between (a rotation's old credential, another run's clean-up) fails
 * the whole list with "Could not find credential": asked again, the list no longer holds it.
 * The collection itself always exists, so a 404 that persists is reported as it is.
 */
export const LIST_NOT_FOUND_ATTEMPTS = 5;

/** Pause before the Nth new sending of such a list, in ms: N times this (deletions come in runs). */
const LIST_NOT_FOUND_PAUSE_MS = 50;

/** A Keystone credential (`/v3/credentials`). `blob` is the TOTP secret: keep it secret. */
export interface Credential {
  readonly id: string;
  readonly userId: string;
  readonly type: string;
  /**
   * The secret as Keystone returned it; undefined when Keystone does not return TOTP blobs
   * (Keystone 30, 2026.2, and later redact them: LP#2158970). Nothing may depend on reading a
   * secret back: what the tool created is known from its own records and the credential's tag.
   */
  readonly blob: string | undefined;
  readonly projectId: string | undefined;
  /** The credential's `keystone_totp` attribute as Keystone returns it: keystone-totp's tag, if any. */
  readonly marker?: unknown;
}

/**
 * TOTP credentials by user, as one fleet-wide list gives them when Keystone answers it whole,
 * else (the list was cut short at Keystone's `list_limit`) one list per user asked about.
 */
export interface TotpCredentialIndex {
  /**
   * Every user's TOTP credentials when one list held them all; undefined when Keystone cut the
   * fleet-wide list short, so that nobody mistakes a partial list for "no credentials".
   */
  readonly all: ReadonlyMap<string, readonly Credential[]> | undefined;
  /** One user's TOTP credentials; with `all` undefined, listed once per user on first ask. */
  of(userId: string): Promise<readonly Credential[]>;
}

/**
 * Lists a user's TOTP credentials.
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/#list-credentials
 * @throws {KeystoneError}
 */
export async function listTotpCredentials(s: KeystoneSession, userId: string): Promise<Credential[]> {
  const q = new URLSearchParams({ user_id: userId, type: "totp" });
  const path = `/credentials?${q}`;
  const list = await listCredentials(s, path);
  // No narrower filter exists than one user's TOTP credentials.
  if (list.truncated) throw truncatedError(path, `user ${userId} holds more TOTP credentials than that`);
  return list.items.map(toCredential).filter((c) => c.userId === userId && c.type === "totp");
}

/** What a session's list gives: the items received and whether Keystone cut the list short. */
type CredentialList = Awaited<ReturnType<KeystoneSession["list"]>>;

/**
 * `GET /v3/credentials?...`, sent again when a credential deleted while Keystone 22 listed it
 * failed the list (see {@link LIST_NOT_FOUND_ATTEMPTS}).
 */
async function listCredentials(s: KeystoneSession, path: string): Promise<CredentialList> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await s.list(path, "credentials");
    } catch (e) {
      if (!isNotFound(e) || attempt >= LIST_NOT_FOUND_ATTEMPTS) throw e;
      await s.pause(LIST_NOT_FOUND_PAUSE_MS * attempt);
    }
  }
}

function isNotFound(e: unknown): boolean {
  return e instanceof KeystoneError && e.status === 404;
}

/**
 * Every TOTP credential in Keystone, by user ID: one request for a whole fleet, where a
 * per-user list costs one request per user. When Keystone cuts that list short at its
 * `list_limit` (Keystone 22 has no paging), each user is listed on its own when first asked
 * about, so no credential is ever missed; where Keystone pages (27.0+), the pages are followed.
 * Likewise when credentials deleted while Keystone 22 lists them fail every sending of the
 * fleet-wide list (see {@link LIST_NOT_FOUND_ATTEMPTS}).
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/#list-credentials
 * @throws {KeystoneError}
 */
export async function listAllTotpCredentials(s: KeystoneSession): Promise<TotpCredentialIndex> {
  let list: CredentialList | undefined;
  try {
    list = await listCredentials(s, "/credentials?type=totp");
  } catch (e) {
    // Credentials deleted all along Keystone 22's fleet-wide list (a rotation run): a user's own
    // list is short, so the window in which a deletion fails it is too.
    if (!isNotFound(e)) throw e;
  }
  if (list === undefined || list.truncated) {
    const perUser = new Map<string, Promise<readonly Credential[]>>();
    return {
      all: undefined,
      of: (userId) => {
        let p = perUser.get(userId);
        if (!p) {
          p = listTotpCredentials(s, userId);
          // A failed list is not kept, so that the next ask tries again.
          p.catch(() => perUser.delete(userId));
          perUser.set(userId, p);
        }
        return p;
      },
    };
  }
  const byUser = new Map<string, Credential[]>();
  for (const c of list.items.map(toCredential)) {
    if (c.type !== "totp") continue;
    const mine = byUser.get(c.userId);
    if (mine) mine.push(c);
    else byUser.set(c.userId, [c]);
  }
  return { all: byUser, of: async (userId) => byUser.get(userId) ?? [] };
}

/**
 * Reads one credential; undefined when it does not exist (404).
 *
 * @throws {KeystoneError} for any other failure.
 */
export async function getCredential(s: KeystoneSession, id: string): Promise<Credential | undefined> {
  const res = await s.call("GET", `/credentials/${encodeURIComponent(id)}`, { retry: true, accept: [404] });
  if (res.status === 404) return undefined;
  return toCredential(asRecord(res.body).credential);
}

/**
 * Creates a TOTP credential, exactly once even when the network fails mid-request.
 *
 * After an ambiguous failure (reset, timeout, 5xx) the user's credentials are searched for
 * the one this call created before trying again: by its tag (`marker`, unique to this call:
 * owner and time), which every release returns, and by its blob where Keystone still returns
 * blobs (before 30). If a retried create still raced an earlier one, the extra copies (same
 * secret, so harmless) are deleted before returning. Without a tag, on a Keystone that does
 * not return blobs, nothing can tell this call's credential from another: the failure is
 * thrown instead of risking a second copy.
 *
 * @param blob - a canonical base32 secret (see `normaliseSecret`).
 * @param marker - keystone-totp's tag (see lib/ownership.ts), stored in the same request as
 *   the credential, so that a later run recognises it even when this answer is lost.
 * @throws {KeystoneError} once attempts are exhausted or on a definite refusal (4xx).
 */
export async function createTotpCredential(
  s: KeystoneSession,
  userId: string,
  blob: string,
  marker?: unknown,
): Promise<Credential> {
  const json = {
    credential: {
      type: "totp",
      user_id: userId,
      blob,
      ...(marker === undefined ? {} : { [MARKER_ATTRIBUTE]: marker }),
    },
  };
  const sent = tagOf(marker);
  const isThisCreate = (c: Credential): boolean =>
    sent !== undefined
      ? sameTag(tagOf(c.marker), sent) && (c.blob === undefined || c.blob === blob)
      : c.blob !== undefined && c.blob === blob;
  let ambiguous = false;
  for (let attempt = 1; ; attempt++) {
    let failure: KeystoneError | undefined;
    try {
      const res = await s.call("POST", "/credentials", {
        json,
        retry: false,
        secrets: [blob],
        accept: CREATE_RETRY_STATUS,
      });
      if (res.status === 201 || res.status === 200) {
        const created = toCredential(asRecord(res.body).credential);
        return ambiguous ? await dropDuplicates(s, userId, isThisCreate, created) : created;
      }
      failure = s.httpError("POST", "/credentials", res, [blob], attempt);
      if (res.status === 429) {
        if (attempt >= s.maxAttempts) throw failure;
        await s.pauseBeforeRetry(attempt, res);
        continue;
      }
      ambiguous = true; // 5xx: Keystone may have stored it before failing.
    } catch (e) {
      if (!(e instanceof KeystoneError)) throw e;
      if (e.code === "E_KEYSTONE_NETWORK" && /refused/.test(e.message)) {
        failure = e; // never reached Keystone: safe to simply try again
      } else if (e.code === "E_KEYSTONE_NETWORK" || e.code === "E_KEYSTONE_TIMEOUT") {
        failure = e;
        ambiguous = true;
      } else {
        throw e;
      }
    }
    if (attempt >= s.maxAttempts) throw failure;
    await s.pauseBeforeRetry(attempt);
    if (ambiguous) {
      const held = await listTotpCredentials(s, userId);
      const existing = held.filter(isThisCreate);
      if (existing.length > 0) return dropDuplicates(s, userId, isThisCreate, existing[0] as Credential, existing);
      // Not identifiable (no tag sent, blobs not returned): a retry could leave a second copy.
      if (sent === undefined && held.some((c) => c.blob === undefined)) throw failure;
    }
  }
}

/** Deletes the copies of this create other than `keep` (a raced retry's), then returns `keep`. */
async function dropDuplicates(
  s: KeystoneSession,
  userId: string,
  isThisCreate: (c: Credential) => boolean,
  keep: Credential,
  known?: readonly Credential[],
): Promise<Credential> {
  const same = (known ?? (await listTotpCredentials(s, userId))).filter(isThisCreate);
  for (const c of same) if (c.id !== keep.id) await deleteCredential(s, c.id);
  return keep;
}

/**
 * Replaces a credential's blob (PATCH).
 *
 * @throws {KeystoneError} `E_KEYSTONE_NOT_FOUND` when it no longer exists.
 */
export async function updateCredentialBlob(s: KeystoneSession, id: string, blob: string): Promise<Credential> {
  const res = await s.call("PATCH", `/credentials/${encodeURIComponent(id)}`, {
    json: { credential: { blob } },
    retry: true,
    secrets: [blob],
  });
  return toCredential(asRecord(res.body).credential);
}

/**
 * Deletes a credential. A 404 counts as done.
 *
 * @returns true if it existed.
 * @throws {KeystoneError}
 */
export async function deleteCredential(s: KeystoneSession, id: string): Promise<boolean> {
  const res = await s.call("DELETE", `/credentials/${encodeURIComponent(id)}`, { retry: true, accept: [404] });
  return res.status !== 404;
}

/** A credential from Keystone's JSON. */
function toCredential(raw: unknown): Credential {
  const c = asRecord(raw);
  return {
    id: String(c.id ?? ""),
    userId: String(c.user_id ?? ""),
    type: String(c.type ?? ""),
    blob: typeof c.blob === "string" ? c.blob : undefined,
    projectId: typeof c.project_id === "string" ? c.project_id : undefined,
    ...(c[MARKER_ATTRIBUTE] === undefined || c[MARKER_ATTRIBUTE] === null ? {} : { marker: c[MARKER_ATTRIBUTE] }),
  };
}
