/**
 * The provider objects of the resources, loaded so that Pulumi stores a `require()` of them in
 * each resource's state (a few hundred bytes, no machine path) instead of their code: Pulumi
 * serialises by reference only what is the `module.exports` of a module under node_modules.
 *
 * @see providers/runtime/provider.cjs for what the objects do and where they find the handlers
 */
import { createRequire } from "node:module";
import { sep } from "node:path";
import { fileURLToPath } from "node:url";
import type * as pulumi from "@pulumi/pulumi";

/** The runtime files, one per resource type. */
export type RuntimeFile = "credential.cjs" | "enrollment.cjs" | "mfa.cjs";

/** The package this repository installs providers/runtime as (`npm ci`, `install-links`): 0.1 and 0.2 states name it. */
export const REPO_RUNTIME_PACKAGE = "keystone-totp-runtime";

/**
 * Whether a module at `url` was installed from the package (it lies under node_modules): then
 * the runtime beside it is under node_modules too, and Pulumi stores it as
 * `require("keystone-totp/runtime/<file>")`. Otherwise it is this repository's TypeScript
 * source, whose providers/runtime folder is not under node_modules (it would be serialised by
 * value, with this machine's paths): the copy `npm ci` put in node_modules is used instead.
 */
export function installedFromPackage(url: string): boolean {
  return fileURLToPath(url).split(sep).includes("node_modules");
}

/**
 * The provider object of one resource type.
 *
 * @param file - the runtime file of the resource, e.g. `credential.cjs`
 * @param url - `import.meta.url` of this module (tests give others)
 */
export function providerObject(file: RuntimeFile, url: string = import.meta.url): pulumi.dynamic.ResourceProvider {
  const require = createRequire(url);
  return require(
    installedFromPackage(url) ? `./runtime/${file}` : `${REPO_RUNTIME_PACKAGE}/${file}`,
  ) as pulumi.dynamic.ResourceProvider;
}
