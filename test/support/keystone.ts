/**
 * Access to the real Keystone started by `scripts/keystone.sh` (see scripts/test.sh), and
 * helpers to make throwaway users in it.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { KeystoneAuth } from "../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../lib/keystone/client.ts";
import { instanceEnv, localStateDir } from "../../operator/commands/local-keystone.ts";
import { createUser, deleteUser } from "./keystone-admin.ts";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** What scripts/keystone.sh writes for each instance. */
export interface KeystoneInstance {
  readonly authUrl: string;
  readonly username: string;
  readonly password: string;
  readonly projectName: string;
  readonly userDomainName: string;
  readonly projectDomainName: string;
  readonly port: number;
  readonly name: string;
  /** The Keystone release ("22", "27", "30"); absent in files written before releases existed (22). */
  readonly release?: string;
}

/** Reads a running instance's details; fails loudly (tests must not skip silently). */
export function keystoneInstance(name = process.env.KEYSTONE_TOTP_TEST_INSTANCE || "default"): KeystoneInstance {
  const base = localStateDir(REPO);
  const file = join(base, "keystone", name, "instance.json");
  if (!existsSync(file)) {
    throw new Error(`no local Keystone '${name}' (${file} missing): run scripts/keystone.sh start, or npm test`);
  }
  return JSON.parse(readFileSync(file, "utf8")) as KeystoneInstance;
}

/** The Keystone release an instance runs (22, Debian 12's, when instance.json does not say). */
export function keystoneRelease(inst: KeystoneInstance = keystoneInstance()): number {
  return inst.release === undefined || inst.release === "" ? 22 : Number(inst.release);
}

/** The admin's auth settings for an instance. */
export function adminAuth(inst: KeystoneInstance = keystoneInstance(), authUrl = inst.authUrl): KeystoneAuth {
  return {
    authUrl: authUrl.replace(/\/+$/, "").replace(/(\/v3)?$/, "/v3"),
    userId: undefined,
    userName: inst.username,
    userDomainId: undefined,
    userDomainName: inst.userDomainName,
    password: inst.password,
    token: undefined,
    projectId: undefined,
    projectName: inst.projectName,
    projectDomainId: undefined,
    projectDomainName: inst.projectDomainName,
    caPem: undefined,
    insecure: false,
    source: "test",
  };
}

/** The OS_* environment for the admin of an instance. */
export function adminEnv(inst: KeystoneInstance = keystoneInstance()): Record<string, string> {
  const env = instanceEnv(inst);
  if (env === undefined) throw new Error(`local Keystone '${inst.name}': instance.json lacks admin settings`);
  return env;
}

/** A fresh random password, also recorded so the secret scan can look for it. */
export function randomPassword(): string {
  return `Pw-${randomBytes(12).toString("base64url")}`;
}

/** A test user made in Keystone, with its password. */
export interface TestUser {
  readonly id: string;
  readonly name: string;
  readonly domain: string;
  readonly password: string;
}

/** Creates a user with a random password in the Default domain. */
export async function makeUser(admin: KeystoneClient, name: string): Promise<TestUser> {
  const domainId = (await admin.domainIdByName("Default")) ?? "default";
  const password = randomPassword();
  const existing = await admin.findUser(name, "Default");
  if (existing) await deleteUser(admin, existing.id);
  const u = await createUser(admin, { name, domainId, password });
  return { id: u.id, name, domain: "Default", password };
}

/** A client for the admin of the default instance. */
export function adminClient(authUrl?: string): KeystoneClient {
  const inst = keystoneInstance();
  return new KeystoneClient(adminAuth(inst, authUrl ?? inst.authUrl));
}

/** A short unique suffix for names. */
export function uniq(): string {
  return randomBytes(4).toString("hex");
}
