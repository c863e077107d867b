/**
 * Where the provider runtime finds its handler modules (providers/runtime/provider.cjs), and
 * which runtime a resource module stores (providers/provider-object.ts): from the package
 * installed under a consumer's node_modules, and from this repository alike, never from
 * whatever the working directory happens to resolve.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { installedFromPackage, providerObject } from "../../../../providers/provider-object.ts";
import { REPO } from "../../../support/keystone.ts";

const { handlerPath } = createRequire(import.meta.url)("../../../../providers/runtime/provider.cjs") as {
  handlerPath: (resource: string, dir?: string, cwd?: string) => string;
};

const tmp = mkdtempSync(join(tmpdir(), "kt-runtime-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Creates the files (empty) and returns the root they were made under. */
function layout(name: string, files: readonly string[]): string {
  const root = join(tmp, name);
  for (const f of files) {
    mkdirSync(join(root, f, ".."), { recursive: true });
    writeFileSync(join(root, f), "");
  }
  return root;
}

describe("handlerPath (provider.cjs)", () => {
  it("installed from the package: the compiled handlers beside the runtime, whatever the working directory", () => {
    const pkg = layout("consumer/node_modules/keystone-totp", [
      "dist/providers/runtime/provider.cjs",
      "dist/providers/credential/handlers.js",
    ]);
    // A working directory that is itself a keystone-totp checkout does not win over the package.
    expect(handlerPath("credential", join(pkg, "dist/providers/runtime"), REPO)).toBe(
      join(pkg, "dist/providers/credential/handlers.js"),
    );
  });

  it("in this repository's sources: the TypeScript handlers beside providers/runtime", () => {
    expect(handlerPath("mfa", join(REPO, "providers/runtime"), tmp)).toBe(join(REPO, "providers/mfa/handlers.ts"));
  });

  it("the copy npm made in node_modules/keystone-totp-runtime: the checkout that installed it", () => {
    const repo = layout("repo", [
      "node_modules/keystone-totp-runtime/provider.cjs",
      "providers/enrollment/handlers.ts",
    ]);
    expect(handlerPath("enrollment", join(repo, "node_modules/keystone-totp-runtime"), tmp)).toBe(
      join(repo, "providers/enrollment/handlers.ts"),
    );
  });

  it("a worktree sharing another checkout's node_modules runs its own handlers (the working directory's)", () => {
    const main = layout("main", [
      "node_modules/keystone-totp-runtime/provider.cjs",
      "providers/credential/handlers.ts",
    ]);
    const worktree = layout("worktree", ["providers/credential/handlers.ts"]);
    expect(handlerPath("credential", join(main, "node_modules/keystone-totp-runtime"), worktree)).toBe(
      join(worktree, "providers/credential/handlers.ts"),
    );
  });

  it("no handler module anywhere: an error that names where it looked", () => {
    const lone = layout("lone", ["node_modules/keystone-totp-runtime/provider.cjs"]);
    expect(() => handlerPath("credential", join(lone, "node_modules/keystone-totp-runtime"), tmp)).toThrow(
      /no handler module for credential .*reinstall keystone-totp/,
    );
  });

  it("every handler module of this repository is found from the installed copy", () => {
    const copy = join(REPO, "node_modules", "keystone-totp-runtime");
    for (const r of ["credential", "enrollment", "mfa"]) {
      expect(handlerPath(r, copy, REPO)).toBe(join(REPO, "providers", r, "handlers.ts"));
    }
    expect(handlerPath("delivery", copy, REPO)).toBe(join(REPO, "providers/legacy/delivery/handlers.ts"));
  });

  it("the 0.1 delivery (states name delivery.cjs) is found in providers/legacy/, in the package and the sources", () => {
    const pkg = layout("legacy-package/node_modules/keystone-totp", [
      "dist/providers/runtime/provider.cjs",
      "dist/providers/legacy/delivery/handlers.js",
      // A folder of the resource's own name is not where delivery lives (any more).
      "dist/providers/delivery/handlers.js",
    ]);
    expect(handlerPath("delivery", join(pkg, "dist/providers/runtime"), tmp)).toBe(
      join(pkg, "dist/providers/legacy/delivery/handlers.js"),
    );
    expect(handlerPath("delivery", join(REPO, "providers/runtime"), tmp)).toBe(
      join(REPO, "providers/legacy/delivery/handlers.ts"),
    );
    const repo = layout("legacy-repo", ["node_modules/keystone-totp-runtime/provider.cjs"]);
    expect(() => handlerPath("delivery", join(repo, "node_modules/keystone-totp-runtime"), tmp)).toThrow(
      /no handler module for delivery .*legacy\/delivery\/handlers\.ts/,
    );
  });
});

describe("providerObject (provider-object.ts)", () => {
  it("knows a module installed under node_modules from this repository's source", () => {
    expect(installedFromPackage(pathToFileURL("/p/node_modules/keystone-totp/dist/providers/x.js").href)).toBe(true);
    expect(installedFromPackage(pathToFileURL(join(REPO, "providers/provider-object.ts")).href)).toBe(false);
  });

  it("in this repository: the object of keystone-totp-runtime in node_modules, the name 0.1 and 0.2 states store", () => {
    const require = createRequire(import.meta.url);
    expect(providerObject("credential.cjs")).toBe(require("keystone-totp-runtime/credential.cjs"));
    expect(require.resolve("keystone-totp-runtime/credential.cjs").split("/")).toContain("node_modules");
  });
});
