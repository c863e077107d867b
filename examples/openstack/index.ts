/**
 * An OpenStack user made by `@pulumi/openstack`, enrolled in TOTP by keystone-totp: the
 * user's ID feeds the credential, so Pulumi creates the user first and deletes it last.
 *
 * Who owns what on the user: `openstack.identity.User` owns the account (name, password,
 * domain, project, enabled, extra); keystone-totp owns its MFA options
 * (`multi_factor_auth_enabled`, `multi_factor_auth_rules`) while the credential exists, and
 * keeps the options from before in a marker attribute to restore them on delete. The User
 * therefore sets no MFA option and ignores changes to them: its provider reads the rules
 * keystone-totp wrote on every refresh, and an update would otherwise write back what the
 * program declares (`multi_factor_auth_enabled: false`, i.e. a TOTP code alone logs in).
 *
 * Type-checked by `npm run lint`; running it needs the openstack resource plugin (see
 * README.md in this folder).
 */
import * as openstack from "@pulumi/openstack";
import * as pulumi from "@pulumi/pulumi";
// The package's public entry, as this repository holds it; in a program of your own, after
// `npm install keystone-totp`: `import { TotpCredential } from "keystone-totp";`
import { TotpCredential } from "../../providers/index.ts";

const config = new pulumi.Config();
/** Keystone's `Default` domain has the ID `default`. */
const domainId = config.get("domainId") ?? "default";

/**
 * The User's arguments keystone-totp owns. Typed against `UserArgs`, so that a rename in a
 * later @pulumi/openstack fails the type check instead of silently ignoring nothing.
 */
const OWNED_BY_KEYSTONE_TOTP: (keyof openstack.identity.UserArgs)[] = [
  "multiFactorAuthEnabled",
  "multiFactorAuthRules",
];

const alice = new openstack.identity.User(
  "alice",
  {
    name: "alice",
    domainId,
    password: config.requireSecret("alicePassword"),
    extra: { email: "alice@example.com" },
    // No multiFactorAuthEnabled / multiFactorAuthRules here: keystone-totp writes them.
  },
  // A refresh reads the rules keystone-totp wrote; without this the next `up` would "correct"
  // them back to the program's (none, MFA off) and let a TOTP code alone log alice in.
  { ignoreChanges: OWNED_BY_KEYSTONE_TOTP },
);

const aliceTotp = new TotpCredential("alice-totp", {
  userId: alice.id,
  account: pulumi.interpolate`${alice.name}@${config.get("domainName") ?? "Default"}`,
  issuer: "ACME Cloud",
  rotationDays: 180,
  graceHours: 24,
});

/** Deliver these to alice yourself (both are Pulumi secrets): `pulumi stack output --show-secrets`. */
export const secret = aliceTotp.secret;
export const otpauthUri = aliceTotp.otpauthUri;
/** Safe to show: tells two secrets apart without revealing either. */
export const fingerprint = aliceTotp.fingerprint;
/** When the previous secret stops working after a rotation (absent when none is retiring). */
export const retireAfter = aliceTotp.retireAfter;
