/**
 * How keystone-totp recognises, after a crash, what it wrote in Keystone itself: one marker
 * attribute, `keystone_totp`, on every Keystone object it writes, in the SAME request as the
 * write it describes, so that no crash can separate the two. Keystone's SQL backends keep
 * attributes they do not know in the object's `extra` column and return them in GET and in
 * lists (verified on Keystone 22 for users and for credentials: POST, GET, both list forms,
 * and a PATCH of the blob, which keeps it).
 *
 * - On a user, the marker sits beside the MFA rules the tool wrote and records the options
 *   they replaced (see mfa/posture.ts): `{v:1, previous:{...}}`.
 * - On a TOTP credential, the tag says which resource created it and when:
 *   `{v:1, owner:"<project>/<stack>/<kind>/<user key>", at:"<ISO time>"}`. A credential of the
 *   user tagged with the resource's own owner that the resource's state does not reference
 *   (neither current nor retiring) is the leftover of a create whose answer was lost (Keystone
 *   stopped, the run was killed): the resource adopts it instead of creating another, so the
 *   user ends with exactly one credential, and a QR code already mailed for it keeps working.
 *   Untagged credentials (enrolled by hand, or by an earlier version) and those of another
 *   owner (another stack, another resource of the same user during a rename) are not the
 *   resource's: they keep the `unmanaged` policy.
 *
 * Why a tag and not secrets derived from a per-stack key (the other design considered): a
 * derived secret needs a key that, once leaked, yields every user's past and future secrets,
 * plus a generation counter kept in step across crashes; the tag costs nothing secret, no
 * extra request (it rides in the POST and comes back in the lists the provider already
 * makes), and tells an operator in `openstack credential show` who made the credential.
 *
 * Nothing here is secret: owners and times only; never a blob.
 */

/** Name of the attribute that carries the marker on users and the tag on credentials. */
export const MARKER_ATTRIBUTE = "keystone_totp";

/** Version of the marker's shape (both kinds). A marker of another version is not ours to read. */
export const MARKER_VERSION = 1;

/** Which resource kind created a credential (part of its owner). */
export type OwnerKind = "enrollment" | "credential";

/**
 * The marker fields of a `keystone_totp` attribute; undefined when it is absent, not an
 * object, or of another version.
 */
export function readMarker(raw: unknown): Readonly<Record<string, unknown>> | undefined {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return undefined;
  const m = raw as Record<string, unknown>;
  return m.v === MARKER_VERSION ? m : undefined;
}

/** A marker of the current version holding `fields` (the caller's own shape). */
export function marker<T extends Record<string, unknown>>(fields: T): T & { readonly v: typeof MARKER_VERSION } {
  return { v: MARKER_VERSION, ...fields };
}

/** The tag of a credential keystone-totp created. */
export interface CredentialTag {
  readonly v: typeof MARKER_VERSION;
  /** The resource that created it; see {@link ownerId}. */
  readonly owner: string;
  /** When it was created, ISO 8601 UTC (Keystone 22 keeps no creation time on credentials). */
  readonly at: string;
}

/**
 * The owner of the credentials one resource creates: the Pulumi project and stack (so that
 * another stack, e.g. the shard a user moves to, never takes a credential this one still
 * holds), the resource kind and its user key (so that a new resource of the same user, during
 * a rename, never takes the old resource's credential, which the old one's delete removes).
 *
 * @param stack - `project/stack`; absent when not known (handlers called outside a stack).
 */
export function ownerId(stack: string | undefined, kind: OwnerKind, key: string): string {
  return `${stack && stack !== "" ? stack : "-"}/${kind}/${key}`;
}

/** The tag to send with a new credential of `owner`, created at `at`. */
export function credentialTag(owner: string, at: Date): CredentialTag {
  return marker({ owner, at: at.toISOString() });
}

/** A credential's tag; undefined when untagged (by hand, an earlier version) or malformed. */
export function tagOf(raw: unknown): CredentialTag | undefined {
  const m = readMarker(raw);
  if (!m || typeof m.owner !== "string" || m.owner === "") return undefined;
  const at = typeof m.at === "string" && !Number.isNaN(Date.parse(m.at)) ? m.at : "";
  return { v: MARKER_VERSION, owner: m.owner, at };
}

/**
 * Whether two tags name the same create: same owner and the same time to the millisecond
 * (one resource makes one create at a time, so this identifies a request whose answer was lost).
 */
export function sameTag(a: CredentialTag | undefined, b: CredentialTag | undefined): boolean {
  return a !== undefined && b !== undefined && a.owner === b.owner && a.at !== "" && a.at === b.at;
}

/** What {@link planAdoption} needs of a credential the user holds. */
export interface HeldCredential {
  readonly id: string;
  /** The secret Keystone holds; undefined when Keystone does not return it (30 and later). */
  readonly blob: string | undefined;
  /** The raw `keystone_totp` attribute, as Keystone returned it. */
  readonly marker?: unknown;
}

/** How a resource about to create a credential treats what the user already holds. */
export interface AdoptionPlan<C extends HeldCredential> {
  /** The resource's own leftover to take as its credential instead of creating one; else undefined. */
  readonly adopt: C | undefined;
  /** Its other own leftovers: retired like a replaced credential, whatever the unmanaged policy. */
  readonly leftovers: readonly string[];
  /** Credentials the state references (current, retiring), as given: the caller keeps its rules for them. */
  readonly referenced: readonly string[];
  /** Untagged or another owner's: the `unmanaged` policy applies. */
  readonly foreign: readonly string[];
}

/**
 * Decides, before a resource POSTs a new TOTP credential for a user, whether one the user
 * already holds is the resource's own leftover to adopt (pure: no network).
 *
 * A held credential is an own leftover when its tag names `owner` and the state does not
 * reference it. Of these, the newest by its tag's time (then by ID, for a stable choice) whose
 * blob is usable is adopted: `usable(blob)` (a valid secret), and equal to `supplied` when the
 * resource was given its secret. The others are leftovers to retire. A leftover whose secret
 * Keystone does not return (30 and later) is never adopted: a secret the tool cannot read
 * cannot be sent, so the user gets a new one and the leftover is retired.
 *
 * @param held - the user's TOTP credentials, as just listed.
 * @param owner - this resource's {@link ownerId}.
 * @param referenced - IDs the resource's state holds (empty at create).
 * @param usable - whether a blob is a secret the user can be sent.
 * @param supplied - the secret the resource was given, if any.
 */
export function planAdoption<C extends HeldCredential>(
  held: readonly C[],
  owner: string,
  referenced: ReadonlySet<string>,
  usable: (blob: string) => boolean,
  supplied?: string,
): AdoptionPlan<C> {
  const own: { c: C; at: string }[] = [];
  const refs: string[] = [];
  const foreign: string[] = [];
  for (const c of held) {
    if (referenced.has(c.id)) {
      refs.push(c.id);
      continue;
    }
    const t = tagOf(c.marker);
    if (t?.owner === owner) own.push({ c, at: t.at });
    else foreign.push(c.id);
  }
  const candidates = own
    .filter(({ c }) => c.blob !== undefined && usable(c.blob) && (supplied === undefined || c.blob === supplied))
    .sort((a, b) => (a.at === b.at ? (a.c.id < b.c.id ? 1 : -1) : a.at < b.at ? 1 : -1));
  const adopt = candidates[0]?.c;
  return {
    adopt,
    leftovers: own.filter(({ c }) => c !== adopt).map(({ c }) => c.id),
    referenced: refs,
    foreign,
  };
}
