/**
 * The keystone-totp Pulumi program: read config, declare the credentials, export a summary.
 *
 * Credentials are declared from the stack config key `keystone-totp:credentials`, a map of
 * resource name to arguments (see README, Configuration).
 */
import * as pulumi from "@pulumi/pulumi";
import { TotpCredential } from "./providers/credential/resource.ts";
import { loadCredentialSpecs } from "./providers/program/credentials.ts";

const config = new pulumi.Config();
const specs = loadCredentialSpecs(config.getObject<unknown>("credentials") ?? {});

const credentials = specs.map(
  (s) =>
    new TotpCredential(s.name, {
      ...s.args,
      issuer: s.args.issuer ?? config.get("issuer"),
      ...(s.secretConfigKey ? { secret: config.requireSecret(s.secretConfigKey) } : {}),
    }),
);

export const summary = {
  credentials: credentials.length,
};
export const fingerprints = Object.fromEntries(specs.map((s, i) => [s.name, credentials[i]?.fingerprint]));
export const credentialIds = Object.fromEntries(specs.map((s, i) => [s.name, credentials[i]?.credentialId]));
