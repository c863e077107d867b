/**
 * Login posture: which MFA rules keystone-totp writes on a user, as plain functions (no
 * network). `apply.ts` does the Keystone side.
 *
 * Keystone lets a user with a TOTP credential and no MFA rules log in with a 6-digit code
 * alone, and keeps no lockout for failed TOTP attempts. So before a user's first TOTP
 * credential exists the tool writes rules that admit every way the user logs in today except
 * TOTP alone ("staged"); enforcement later replaces `["password"]` by `["password","totp"]`.
 *
 * How Keystone checks rules (keystone/auth/core.py, `check_auth_methods_against_rules`, 22.0
 * and 28.0): only `false` in `multi_factor_auth_enabled` turns them off; each rule is first cut
 * down to the methods in `[auth] methods`; a login passes when its methods include all of one
 * rule's methods. Before 28.0.0 (LP#2102096) a rule cut down to nothing matches ANY login, so
 * every function here treats such a rule as admitting everything, and the tool writes rules
 * only of enabled methods.
 *
 * @see https://docs.openstack.org/keystone/latest/admin/auth-totp.html
 * @see https://docs.openstack.org/keystone/latest/admin/multi-factor-authentication.html
 */

import { type MARKER_VERSION, marker, readMarker } from "../ownership.ts";

/** One MFA rule: the methods a login must all have used. */
export type MfaRule = readonly string[];

/** A user's MFA options as Keystone holds them; `null` is an option that is not set. */
export interface MfaOptions {
  /** `options.multi_factor_auth_enabled`; only `false` turns the rules off. */
  readonly enabled: boolean | null;
  /** `options.multi_factor_auth_rules`. */
  readonly rules: readonly MfaRule[] | null;
}

/** No MFA option set. */
export const NO_OPTIONS: MfaOptions = Object.freeze({ enabled: null, rules: null });

/**
 * The user attribute where the tool keeps its marker, and the marker's version: shared with
 * the tag on the credentials it creates (see lib/ownership.ts). Keystone's SQL identity backend
 * stores unknown user attributes (`extra`) and returns them in GET and list; the marker is
 * written in the same PATCH as the rules, so a crash can never leave one without the other.
 */
export { MARKER_ATTRIBUTE, MARKER_VERSION } from "../ownership.ts";

/**
 * What the tool leaves beside rules it wrote: the options the user had before, to be restored
 * exactly when the user leaves the fleet. Its presence is how a later run (after a crash
 * between the PATCH and the state's save, or from another program) tells the tool's rules
 * from the operator's.
 */
export interface PostureMarker {
  readonly v: typeof MARKER_VERSION;
  readonly previous: MfaOptions;
  /**
   * The `MfaEnforcement` whose enforced rules these are (its `enforcedBy`); absent for staged
   * rules and for markers written before it existed. An enforcement's delete loosens the rules
   * only while they are its own: a renamed user's new enforcement, or the one of the stack a
   * user moved to, may have enforced them since.
   */
  readonly enforcedBy?: string;
}

/**
 * The marker to write beside the tool's rules on a user whose options before were `previous`.
 *
 * @param enforcedBy - the enforcement writing enforced rules (see {@link PostureMarker.enforcedBy}).
 */
export function postureMarker(previous: MfaOptions, enforcedBy?: string): PostureMarker {
  return enforcedBy === undefined ? marker({ previous }) : marker({ previous, enforcedBy });
}

/** How a user may log in, as far as the tool is concerned. */
export type Posture =
  /** A TOTP code alone logs the user in (no rules, or rules that admit it). */
  | "open"
  /** The tool's rules: every other method as before, TOTP alone refused. */
  | "staged"
  /** The tool's rules: password logins need a TOTP code too. */
  | "enforced"
  /** The operator's own rules, kept: they already refuse TOTP alone. */
  | "own";

/** The fleet's posture settings, normalised (see `resolvePostureSettings`). */
export interface PostureSettings {
  /** Keystone's `[auth] methods`, as probed (see `KeystoneClient.authMethods`). */
  readonly methods: readonly string[];
  /** Let a TOTP code alone log users in (the tool writes no staged rules). Default false. */
  readonly allowTotpOnlyLogin: boolean;
  /** Under enforcement, refuse application credentials too. Default false (they keep working). */
  readonly refuseApplicationCredentials: boolean;
  /** Replace a user's own rules that let TOTP alone in (else the user is refused). Default false. */
  readonly replaceOwnRules: boolean;
}

/** Methods that never get a rule of their own: TOTP (the point) and token re-authentication. */
const NOT_A_LOGIN = new Set(["totp", "token"]);

/** Whether a rule set is made of lists of strings, as Keystone requires. */
function isRules(v: unknown): v is MfaRule[] {
  return Array.isArray(v) && v.every((r) => Array.isArray(r) && r.every((m) => typeof m === "string"));
}

/** Reads the MFA options out of a Keystone user's `options`. */
export function optionsOf(options: Readonly<Record<string, unknown>>): MfaOptions {
  const e = options.multi_factor_auth_enabled;
  const r = options.multi_factor_auth_rules;
  return { enabled: typeof e === "boolean" ? e : null, rules: isRules(r) ? r : null };
}

/** Reads the tool's marker from a user's `keystone_totp` attribute; undefined when absent or foreign. */
export function markerOf(raw: unknown): PostureMarker | undefined {
  const m = readMarker(raw);
  if (!m?.previous || typeof m.previous !== "object") return undefined;
  const p = m.previous as Record<string, unknown>;
  const enabled = typeof p.enabled === "boolean" ? p.enabled : null;
  const rules = isRules(p.rules) ? p.rules : null;
  const by = typeof m.enforcedBy === "string" && m.enforcedBy !== "" ? m.enforcedBy : undefined;
  return postureMarker({ enabled, rules }, by);
}

/**
 * The options the user had before the tool touched them: the marker's record when the tool's
 * rules are on the user (even from a run that crashed before saving its state), else what the
 * user holds now.
 */
export function previousOptions(user: {
  readonly options: Readonly<Record<string, unknown>>;
  readonly marker?: unknown;
}): MfaOptions {
  return markerOf(user.marker)?.previous ?? optionsOf(user.options);
}

/** Whether no option is set. */
export function isUnset(o: MfaOptions | undefined): boolean {
  return o === undefined || (o.enabled === null && o.rules === null);
}

/** The rules Keystone applies: none when turned off (only `false` does that). */
export function effectiveRules(o: MfaOptions): readonly MfaRule[] {
  return o.enabled === false ? [] : (o.rules ?? []);
}

/**
 * Whether a login with `login` methods passes `rules` on a Keystone with `methods` enabled,
 * the permissive way (pre-28.0 Keystone): no rules admit everything, and so does a rule made
 * only of methods that are not enabled.
 */
export function admits(rules: readonly MfaRule[], login: readonly string[], methods: readonly string[]): boolean {
  if (rules.length === 0) return true;
  const enabled = new Set(methods);
  const used = new Set(login);
  return rules.some((r) => r.filter((m) => enabled.has(m)).every((m) => used.has(m)));
}

/** Whether a TOTP code alone passes these options. */
export function admitsTotpAlone(o: MfaOptions, methods: readonly string[]): boolean {
  return admits(effectiveRules(o), ["totp"], methods);
}

/**
 * Whether every login `a` admits is admitted by `b` too (so `a` is at least as strict).
 * The smallest login a rule admits is the rule itself, cut down to enabled methods.
 */
export function atLeastAsStrict(a: readonly MfaRule[], b: readonly MfaRule[], methods: readonly string[]): boolean {
  if (a.length === 0) return b.length === 0 || admits(b, [], methods);
  const enabled = new Set(methods);
  return a.every((r) =>
    admits(
      b,
      r.filter((m) => enabled.has(m)),
      methods,
    ),
  );
}

/** Enabled methods that are ways to log in, in Keystone's order, without duplicates. */
function loginMethods(methods: readonly string[]): string[] {
  return [...new Set(methods)].filter((m) => !NOT_A_LOGIN.has(m));
}

/**
 * The staged rule set: one rule per enabled login method (password, application credentials,
 * federation protocols, external, oauth1 ...), none for TOTP: every login works as before,
 * except a TOTP code alone.
 */
export function stagedRules(methods: readonly string[]): MfaRule[] {
  return loginMethods(methods).map((m) => [m]);
}

/**
 * Enforcement applied to a rule set: every rule that a password login satisfies without TOTP
 * gets `totp` added; other rules (application credentials, federation protocols ...) stay,
 * except application credentials when refused. With `allowTotpOnlyLogin` a TOTP code alone is
 * admitted as well.
 *
 * @throws {Error} when `password` or `totp` is not enabled: `["password","totp"]` would then
 *   be cut down to one method by Keystone, and either enforce nothing or let TOTP alone in.
 */
export function enforce(rules: readonly MfaRule[], s: PostureSettings): MfaRule[] {
  for (const m of ["password", "totp"]) {
    if (!s.methods.includes(m)) {
      throw new Error(
        `cannot enforce password + TOTP: '${m}' is not in Keystone's [auth] methods (${s.methods.join(",")})`,
      );
    }
  }
  const out: MfaRule[] = [];
  for (const r of rules) {
    if (s.refuseApplicationCredentials && r.length === 1 && r[0] === "application_credential") continue;
    const rule = r.includes("password") && !r.includes("totp") ? [...r, "totp"] : [...r];
    if (!out.some((o) => sameRule(o, rule))) out.push(rule);
  }
  if (s.allowTotpOnlyLogin && !out.some((o) => sameRule(o, ["totp"]))) out.push(["totp"]);
  return out;
}

/** The enforced rule set of a user without rules of their own: {@link enforce} of the staged set. */
export function enforcedRules(s: PostureSettings): MfaRule[] {
  return enforce(stagedRules(s.methods), s);
}

function sameRule(a: MfaRule, b: MfaRule): boolean {
  return a.length === b.length && a.every((m) => b.includes(m));
}

/** Whether two rule sets are the same (order of rules and of methods ignored). */
export function sameRules(a: readonly MfaRule[], b: readonly MfaRule[]): boolean {
  return a.length === b.length && a.every((r) => b.some((o) => sameRule(r, o)));
}

/** What the tool does with one user's options. */
export interface PostureDecision {
  readonly posture: Posture;
  /** Options to write (with the marker); undefined: leave the user's options as they are. */
  readonly write: MfaOptions | undefined;
}

/** Why a user cannot be given a safe posture (named in the error the caller raises). */
export class PostureRefusal extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PostureRefusal";
  }
}

/**
 * Decides what to write on a user whose options before the tool were `previous`.
 *
 * - The user's own rules that refuse TOTP alone are kept (posture `own`); under enforcement
 *   {@link enforce} is applied to them, and written only when that changes them.
 * - Own rules that let TOTP alone in are refused, unless `replaceOwnRules` (the tool's rules
 *   replace them) or `allowTotpOnlyLogin` (kept as they are, posture `open`).
 * - Otherwise the tool's rules: staged, or enforced when `want` is `enforced`. With
 *   `allowTotpOnlyLogin` and `want` staged, nothing is written (posture `open`).
 *
 * @throws {PostureRefusal} for own rules that let TOTP alone in, without a setting that allows it.
 * @throws {Error} from {@link enforce} when enforcement is impossible on this Keystone.
 */
export function decidePosture(previous: MfaOptions, want: "staged" | "enforced", s: PostureSettings): PostureDecision {
  const own = effectiveRules(previous);
  const openOwn = own.length > 0 && admitsTotpAlone(previous, s.methods);
  if (openOwn && !s.replaceOwnRules && !s.allowTotpOnlyLogin) {
    throw new PostureRefusal(
      "its own MFA rules let a TOTP code alone log in; fix the rules, or set keystone-totp:replaceOwnRules " +
        "(the tool's rules replace them until the user leaves the fleet)",
    );
  }
  if (own.length > 0 && !openOwn) {
    if (want === "staged") return { posture: "own", write: undefined };
    const rules = enforce(own, s);
    if (sameRules(rules, own) && previous.enabled !== false) return { posture: "own", write: undefined };
    return { posture: admits(rules, ["totp"], s.methods) ? "open" : "enforced", write: { enabled: true, rules } };
  }
  if (openOwn && !s.replaceOwnRules) return { posture: "open", write: undefined };
  if (want === "staged") {
    return s.allowTotpOnlyLogin
      ? { posture: "open", write: undefined }
      : { posture: "staged", write: { enabled: true, rules: stagedRules(s.methods) } };
  }
  const rules = enforcedRules(s);
  return { posture: s.allowTotpOnlyLogin ? "open" : "enforced", write: { enabled: true, rules } };
}

/** The posture a user's current options give, for reports (`status`, `doctor`). */
export function postureOf(
  user: { readonly options: Readonly<Record<string, unknown>>; readonly marker?: unknown },
  methods: readonly string[],
): Posture {
  const now = optionsOf(user.options);
  if (admitsTotpAlone(now, methods)) return "open";
  if (!markerOf(user.marker)) return "own";
  return admits(effectiveRules(now), ["password"], methods) ? "staged" : "enforced";
}

/** Parses a comma-separated method list (as passed in resource inputs). */
export function parseMethods(v: unknown): string[] {
  if (Array.isArray(v)) return v.filter((m): m is string => typeof m === "string" && m !== "");
  return typeof v === "string"
    ? v
        .split(",")
        .map((m) => m.trim())
        .filter((m) => m !== "")
    : [];
}
