/**
 * Shared by credential.cjs, enrollment.cjs, delivery.cjs and mfa.cjs: a dynamic provider whose every method
 * loads the handler module of its resource and calls it.
 *
 * Why these files are CommonJS modules of their own: Pulumi serialises the provider object into
 * every resource's state, twice. An object that is the `module.exports` of a module under
 * node_modules is stored as a `require("<package>/<file>")` of a few hundred bytes instead of as
 * code. Where these files live:
 *   - installed from the package: node_modules/keystone-totp/dist/providers/runtime/, stored as
 *     `require("keystone-totp/runtime/<file>")` (package.json `exports`);
 *   - in this repository: node_modules/keystone-totp-runtime/, a copy of providers/runtime that
 *     `npm ci` makes (`.npmrc` sets `install-links=true`: a symlink would resolve back to
 *     providers/ and be serialised by value), stored as `require("keystone-totp-runtime/<file>")`,
 *     as in every state written by 0.1 and 0.2. After editing a file here, run `npm install` to
 *     refresh that copy; the logic itself lives in the handler modules.
 */
"use strict";

const { existsSync } = require("node:fs");
const path = require("node:path");
const { pathToFileURL } = require("node:url");

/** The compiled handler module beside this file (the package's dist/), then the source beside it (providers/). */
const BESIDE = ["handlers.js", "handlers.ts"];

/**
 * The folder under providers/ of each resource whose handlers are not in a folder of its own
 * name: the 0.1 `TotpDelivery`, kept only to upgrade 0.1 stacks, lives with the legacy code.
 * States name the runtime file (`delivery.cjs`), never this folder, so it may move.
 */
const FOLDERS = { delivery: "legacy/delivery" };

/**
 * Where the handler module of `resource` is, found from this file's own place so that no path
 * of the machine is ever stored (none is: this runs in the provider process):
 *   1. beside it: `dist/providers/runtime/` next to `dist/providers/<folder>/handlers.js`
 *      (installed from the package), or `providers/runtime/` next to the TypeScript sources;
 *   2. this repository's copy in node_modules/keystone-totp-runtime: the sources of the
 *      checkout the program runs in (the working directory, when it is a keystone-totp checkout:
 *      a worktree that shares another checkout's node_modules must run its own handlers), else
 *      of the checkout that installed the copy, two folders up.
 *
 * The folder is the resource's name, or its entry in FOLDERS (`legacy/delivery`).
 *
 * @param {string} resource "credential", "enrollment", "delivery" or "mfa"
 * @param {string} [dir] the folder of this file (tests give others)
 * @param {string} [cwd] the working directory (tests give others)
 * @returns {string} absolute path of the handler module
 * @throws {Error} naming the folders looked in, when no handler module is found
 */
function handlerPath(resource, dir = __dirname, cwd = process.cwd()) {
  const tried = [];
  const first = (candidates) => {
    for (const c of candidates) {
      tried.push(c);
      if (existsSync(c)) return c;
    }
    return undefined;
  };
  const folder = Object.hasOwn(FOLDERS, resource) ? FOLDERS[resource] : resource;
  const beside = first(BESIDE.map((f) => path.join(dir, "..", folder, f)));
  if (beside) return beside;
  const source = (root) => path.join(root, "providers", folder, "handlers.ts");
  const found = first([source(cwd), source(path.join(dir, "..", ".."))]);
  if (found) return found;
  throw new Error(
    `keystone-totp: no handler module for ${resource} (looked for ${tried.join(", ")}); reinstall keystone-totp`,
  );
}

/** @param {string} resource */
function load(resource) {
  return import(pathToFileURL(handlerPath(resource)).href);
}

/**
 * Builds a provider for one resource's handler module.
 *
 * @param {string} resource the folder of its handlers under providers/, e.g. "credential"
 * @param {{ check?: boolean, read?: "handler" | "props", deleteNoop?: boolean }} shape the optional methods it has
 */
function makeProvider(resource, shape) {
  const h = () => load(resource);
  const provider = {
    configure: async (req) => (await h()).configure((k) => req.config.get(k)),
    diff: async (_id, olds, news) => (await h()).diff(olds, news),
    create: async (inputs) => (await h()).create(inputs),
    read:
      shape.read === "props" ? async (id, props) => ({ id, props }) : async (id, props) => (await h()).read(id, props),
    update: async (id, olds, news) => (await h()).update(id, olds, news),
    delete: shape.deleteNoop ? async () => {} : async (id, props) => (await h()).remove(id, props),
  };
  if (shape.check) provider.check = async (_olds, news) => (await h()).check(news);
  return provider;
}

module.exports = { makeProvider, handlerPath };
