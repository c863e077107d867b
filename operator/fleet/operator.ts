/**
 * The account keystone-totp logs in with (the operator) is never enrolled, on any release.
 *
 * Enrollment stages MFA rules on a user. On Keystone 2026.2 (30), with
 * `[security_compliance] require_mfa_for_sensitive_account_actions` (the default), an account
 * with MFA rules needs a fresh TOTP code of its own for every TOTP credential change and every
 * change of anyone's MFA options: the operator would lose the power to manage MFA, for everyone
 * and for itself. So a CSV row or a `keystone-totp:credentials` entry naming the operator is
 * refused by name before anything is written (see docs/operator-account.md).
 */
import { KeystoneTotpError } from "../../lib/errors.ts";
import { DEFAULT_DOMAIN } from "../../providers/credential/types.ts";
import type { CredentialSpec } from "./credentials.ts";

/** Who the operator's token says it is. */
export interface OperatorIdentity {
  readonly userId: string;
  /** The token's user name and domain ("" when unknown: then only IDs are compared). */
  readonly userName: string;
  readonly userDomainId: string;
  readonly userDomainName: string;
}

/** A CSV row resolved to its Keystone user, as the check needs it. */
export interface OperatorCheckRow {
  readonly line: number;
  readonly username: string;
  readonly domain: string;
  readonly userId: string;
}

/** The documentation page that explains the refusal. */
export const OPERATOR_ACCOUNT_DOC = "docs/operator-account.md";

const same = (a: string, b: string): boolean => a !== "" && a.toLowerCase() === b.toLowerCase();

/** Whether a `keystone-totp:credentials` entry names the operator (by ID, or by name and domain). */
export function specNamesOperator(spec: CredentialSpec, me: OperatorIdentity): boolean {
  if (spec.args.userId !== undefined) return same(spec.args.userId, me.userId);
  if (spec.args.userName === undefined || !same(spec.args.userName, me.userName)) return false;
  const domain = spec.args.userDomain ?? DEFAULT_DOMAIN;
  return same(domain, me.userDomainName) || same(domain, me.userDomainId);
}

/**
 * Every place that names the operator: `users CSV FILE line N (NAME in domain D)` and
 * `keystone-totp:credentials.KEY`. Empty when none does.
 */
export function operatorPlaces(
  me: OperatorIdentity,
  csvFile: string,
  rows: readonly OperatorCheckRow[],
  specs: readonly CredentialSpec[],
): string[] {
  const places: string[] = [];
  for (const r of rows) {
    if (same(r.userId, me.userId)) {
      places.push(`users CSV ${csvFile} line ${r.line} (${r.username} in domain ${r.domain})`);
    }
  }
  for (const s of specs) {
    if (specNamesOperator(s, me)) places.push(`keystone-totp:credentials.${s.name}`);
  }
  return places;
}

/**
 * Refuses a run that would enroll the operator.
 *
 * @throws {KeystoneTotpError} `E_OPERATOR_SELF` naming every place, why, and what to do.
 */
export function refuseOperatorSelf(
  me: OperatorIdentity,
  csvFile: string,
  rows: readonly OperatorCheckRow[],
  specs: readonly CredentialSpec[],
): void {
  const places = operatorPlaces(me, csvFile, rows, specs);
  if (places.length === 0) return;
  const who = me.userName ? `${me.userName} in domain ${me.userDomainName || me.userDomainId || "?"}` : me.userId;
  throw new KeystoneTotpError(
    "E_OPERATOR_SELF",
    `${places.join("; ")}: this is the account keystone-totp logs in with (${who}), which is never enrolled. ` +
      "MFA rules on it would lock the tool out of MFA administration: on Keystone 2026.2 (30) such an account " +
      "needs a fresh TOTP code for every credential or MFA change, for every user. " +
      `Remove ${places.length === 1 ? "it" : "them"}, or log in as another administrator account; see ${OPERATOR_ACCOUNT_DOC}.`,
  );
}
