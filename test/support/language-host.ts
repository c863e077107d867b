/**
 * Whether plain `pulumi up` can run this project here: it needs Pulumi's Node.js language host
 * `pulumi-language-nodejs` beside the CLI, which scripts/get-pulumi.sh builds with
 * ../shared/tools/build-pulumi-language-nodejs.sh when the repo's parent folder has it.
 * Elsewhere the plain-CLI tests skip and say why; in CI (`CI=true`) they never skip.
 */
import { accessSync, constants, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { REPO } from "./keystone.ts";
import { pulumiBinDir } from "./pulumi.ts";

export const LANGUAGE_HOST = "pulumi-language-nodejs";
/** The tool that builds the language host, in the repo's parent folder. */
export const LANGUAGE_HOST_BUILDER = join(dirname(REPO), "shared", "tools", "build-pulumi-language-nodejs.sh");

/** How the plain-CLI tests run here. */
export interface PlainCliGate {
  /** Skip them (never in CI). */
  readonly skip: boolean;
  /** Why the language host is missing; undefined when it is there. */
  readonly missing: string | undefined;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Looks for the language host beside the CLI that the tests run. */
export function plainCliGate(): PlainCliGate {
  const host = join(pulumiBinDir(), LANGUAGE_HOST);
  let missing: string | undefined;
  if (!executable(host)) {
    missing = existsSync(LANGUAGE_HOST_BUILDER)
      ? `${host} is missing: scripts/get-pulumi.sh builds it with ${LANGUAGE_HOST_BUILDER}; run it and read its output`
      : `${host} is missing and there is no ${LANGUAGE_HOST_BUILDER} to build it (see docs/development.md, Tests)`;
  }
  return { skip: missing !== undefined && process.env.CI !== "true", missing };
}
