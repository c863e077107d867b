/**
 * Shared by credential.cjs, enrollment.cjs, delivery.cjs and mfa.cjs: a dynamic provider whose every method
 * loads the named handler module of keystone-totp and calls it.
 *
 * Why a package of its own: Pulumi serialises the provider object into every resource's state,
 * twice. An object that is the `module.exports` of a module under node_modules is stored as a
 * `require("keystone-totp-runtime/<file>")` of a few hundred bytes instead of as code. `.npmrc`
 * sets `install-links=true`, so `npm ci` copies this folder into node_modules (a symlink would
 * resolve back to providers/ and be serialised by value). After editing a file here, run
 * `npm install` to refresh the copy; the logic itself lives in the handler modules, which are
 * always loaded live from the project.
 */
"use strict";

const { createRequire } = require("node:module");
const { pathToFileURL } = require("node:url");

/**
 * Imports a handler module of keystone-totp by its export name, resolved from the working
 * directory (the Pulumi project) so that no path of the machine is ever stored.
 *
 * @param {string} name e.g. "keystone-totp/credential-handlers"
 */
function load(name) {
  const resolved = createRequire(`${process.cwd()}/package.json`).resolve(name);
  return import(pathToFileURL(resolved).href);
}

/**
 * Builds a provider for one handler module. `methods` lists the optional methods it has.
 *
 * @param {string} name handler module export name
 * @param {{ check?: boolean, read?: "handler" | "props", deleteNoop?: boolean }} shape
 */
function makeProvider(name, shape) {
  const h = () => load(name);
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

module.exports = { makeProvider };
