/**
 * The Pulumi DIY backend's storage as keystone-totp reads and writes it beside the state: a
 * bucket of keyed blobs, either a folder (`file://DIR`) or a PostgreSQL table
 * (`postgres://USER:PW@HOST:PORT/DB[?table=NAME]`, the table the Pulumi CLI made, default
 * `pulumi_state`). Keys are the backend's own (PostgreSQL: below the database name, as the CLI keys them): `.pulumi/locks/...` for Pulumi's locks, and
 * `.keystone-totp/...` for what keystone-totp keeps (the skip records). Whatever shares the
 * state shares these.
 *
 * In PostgreSQL a blob is stored as the Pulumi CLI stores its own: `{"data": "<base64>"}` in
 * the `data` JSON column, so the table keeps one shape.
 *
 * @see https://www.pulumi.com/docs/iac/concepts/state-and-backends/ (DIY backends)
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { ConfigError } from "../../lib/errors.ts";

/** How long to wait for PostgreSQL to accept a connection, in seconds. */
const PG_CONNECT_TIMEOUT_S = 10;
/** The Pulumi CLI's default table. */
const PG_DEFAULT_TABLE = "pulumi_state";
const PG_TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Keyed blobs beside the state. */
export interface StateBucket {
  /** Where, for messages: the folder, or the database and table with no password. */
  readonly location: string;
  /** The blob, or undefined when there is none. */
  read(key: string): Promise<Buffer | undefined>;
  /** Writes the blob whole (a reader never sees half of it). */
  write(key: string, data: Buffer): Promise<void>;
  /** Removes the blob; no error when there is none. */
  remove(key: string): Promise<void>;
  /** Keys starting with `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
  /** Releases the connection, if any. */
  close(): Promise<void>;
}

/**
 * The bucket of the backend `url` (default `PULUMI_BACKEND_URL`); undefined for a backend this
 * module does not read (Pulumi Cloud, object stores): there nothing is kept beside the state.
 *
 * @throws {ConfigError} `E_CONFIG` a `postgres://` URL with a table name PostgreSQL would not take.
 */
export function openBucket(url: string | undefined = process.env.PULUMI_BACKEND_URL): StateBucket | undefined {
  if (url?.startsWith("file://")) return fileBucket(fileBackendDir(url));
  if (url && isPostgresUrl(url)) return postgresBucket(url);
  return undefined;
}

/** Whether `url` names Pulumi's PostgreSQL backend (`postgres://` or `postgresql://`). */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

/** Pulumi's setting for how many stacks its DIY backends read at once (`pulumi stack ls`). */
export const DIY_PARALLEL_ENV = "PULUMI_DIY_BACKEND_PARALLEL";

/**
 * Keeps `pulumi stack ls` on Pulumi's PostgreSQL backend from waiting forever, by reading one
 * stack at a time (`PULUMI_DIY_BACKEND_PARALLEL=1`) unless the operator chose a value.
 *
 * Why: the Pulumi CLI (3.276) lists stacks with 10 readers at once; each holds a database
 * connection for its listing while it asks for a second one, and the CLI allows 2 x GOMAXPROCS
 * connections (2 on one CPU or one pinned core). From 2 x GOMAXPROCS stacks on, every
 * connection is held by a reader waiting for another: measured here, `stack ls` of 4 stacks hung
 * (no CPU, idle connections) on 2 cores and on 1, and took 1.2 to 1.4 s with one reader. The
 * no-op skip and `shards` list stacks on every run. The setting changes nothing but listing.
 *
 * @param env - the environment the Pulumi CLI will inherit (default this process's); changed in place.
 * @returns whether it set the variable.
 * @see docs/shared-backend.md
 */
export function serialisePostgresListing(env: NodeJS.ProcessEnv = process.env): boolean {
  const url = env.PULUMI_BACKEND_URL;
  if (!url || !isPostgresUrl(url) || (env[DIY_PARALLEL_ENV] ?? "") !== "") return false;
  env[DIY_PARALLEL_ENV] = "1";
  return true;
}

/** The folder of a `file://` backend URL (`~` is the home folder; query parameters dropped). */
export function fileBackendDir(url: string): string {
  const path = url.slice("file://".length).split("?")[0] ?? "";
  if (path === "~" || path.startsWith("~/")) return join(homedir(), path.slice(1));
  return path.startsWith("/") ? fileURLToPath(`file://${path}`) : path;
}

/** A backend URL with its password hidden, for messages. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "****";
    return u.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, "//****@");
  }
}

function fileBucket(root: string): StateBucket {
  const pathOf = (key: string) => join(root, ...key.split("/"));
  return {
    location: root,
    async read(key) {
      try {
        return readFileSync(pathOf(key));
      } catch {
        return undefined;
      }
    },
    async write(key, data) {
      const path = pathOf(key);
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const tmp = `${path}.${process.pid}.tmp`;
      writeFileSync(tmp, data, { mode: 0o600 });
      renameSync(tmp, path);
    },
    async remove(key) {
      rmSync(pathOf(key), { force: true });
    },
    async list(prefix) {
      const out: string[] = [];
      const walk = (dir: string) => {
        let names: string[];
        try {
          names = readdirSync(dir);
        } catch {
          return;
        }
        for (const n of names) {
          const p = join(dir, n);
          if (statSync(p).isDirectory()) walk(p);
          else out.push(relative(root, p).split(sep).join("/"));
        }
      };
      // Only the folder the prefix names is walked, not the whole state.
      const base = prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : "";
      walk(base ? pathOf(base) : root);
      return out.filter((k) => k.startsWith(prefix)).sort();
    },
    async close() {},
  };
}

function postgresBucket(url: string): StateBucket {
  const u = new URL(url);
  const table = u.searchParams.get("table") ?? PG_DEFAULT_TABLE;
  if (!PG_TABLE_NAME.test(table)) {
    throw new ConfigError(`PULUMI_BACKEND_URL: the table name '${table}' is not a plain PostgreSQL name`);
  }
  u.searchParams.delete("table");
  // The Pulumi CLI keys every blob under the URL's path (the database name): `DB/.pulumi/...`.
  const root = `${decodeURIComponent(u.pathname.replace(/^\/+/, ""))}/`;
  const full = (key: string) => `${root}${key}`;
  const client = new pg.Client({
    connectionString: u.toString(),
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_S * 1000,
  });
  let connected: Promise<unknown> | undefined;
  const db = async () => {
    connected ??= client.connect();
    await connected;
    return client;
  };
  return {
    location: `${redactedUrl(url)} (table ${table})`,
    async read(key) {
      const r = await (await db()).query<{ blob: string | null }>(
        `SELECT data->>'data' AS blob FROM ${table} WHERE key = $1`,
        [full(key)],
      );
      const blob = r.rows[0]?.blob;
      return typeof blob === "string" ? Buffer.from(blob, "base64") : undefined;
    },
    async write(key, data) {
      await (await db()).query(
        `INSERT INTO ${table} (key, data) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET data = $2, updated_at = now()`,
        [full(key), JSON.stringify({ data: data.toString("base64") })],
      );
    },
    async remove(key) {
      await (await db()).query(`DELETE FROM ${table} WHERE key = $1`, [full(key)]);
    },
    async list(prefix) {
      const r = await (await db()).query<{ key: string }>(
        `SELECT key FROM ${table} WHERE key LIKE $1 ESCAPE '\\' ORDER BY key`,
        [`${full(prefix).replace(/[\\%_]/g, (c) => `\\${c}`)}%`],
      );
      return r.rows.map((row) => row.key.slice(root.length));
    },
    async close() {
      if (connected) await client.end().catch(() => undefined);
    },
  };
}
