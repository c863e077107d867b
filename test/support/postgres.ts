/**
 * A database for Pulumi's PostgreSQL state backend on the PostgreSQL the tests already run (the
 * one Keystone uses): a role and a database of their own per test file, dropped at the end.
 * Made as `scripts/keystone.sh` makes Keystone's: SQL on stdin to psql as the postgres user.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { registerSecrets } from "./secrets.ts";

/** A database for the state backend. */
export interface StateDatabase {
  /** `postgres://USER:PW@127.0.0.1:PORT/DB?sslmode=disable`, for PULUMI_BACKEND_URL. */
  readonly url: string;
  /** Every row of the state table: key and the blob, decoded from the CLI's base64. */
  rows(): Promise<{ key: string; blob: string }[]>;
  /** Drops the database and its role. */
  drop(): Promise<void>;
}

function psqlAdmin(sql: string, port: number): void {
  execFileSync(
    "runuser",
    ["-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", String(port), "-d", "postgres"],
    {
      input: sql,
      stdio: ["pipe", "ignore", "pipe"],
      cwd: "/",
    },
  );
}

/** The port of the first PostgreSQL cluster of this machine (the one keystone.sh started). */
function clusterPort(): number {
  const line = execFileSync("pg_lsclusters", ["--no-header"], { encoding: "utf8" }).split("\n")[0] ?? "";
  const port = Number(line.trim().split(/\s+/)[2]);
  if (!Number.isInteger(port)) throw new Error(`no PostgreSQL cluster: pg_lsclusters said '${line}'`);
  return port;
}

/** Makes a role and a database `name_<random>` for a state backend. */
export function stateDatabase(name: string): StateDatabase {
  const port = clusterPort();
  const db = `${name}_${randomBytes(3).toString("hex")}`;
  const password = randomBytes(18).toString("base64url");
  registerSecrets(password);
  psqlAdmin(`CREATE ROLE ${db} LOGIN PASSWORD '${password}';\nCREATE DATABASE ${db} OWNER ${db};\n`, port);
  const url = `postgres://${db}:${password}@127.0.0.1:${port}/${db}?sslmode=disable`;
  return {
    url,
    async rows() {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const r = await c.query<{ key: string; blob: string | null }>(
          "SELECT key, data->>'data' AS blob FROM pulumi_state ORDER BY key",
        );
        return r.rows.map((row) => ({ key: row.key, blob: Buffer.from(row.blob ?? "", "base64").toString("utf8") }));
      } finally {
        await c.end();
      }
    },
    async drop() {
      psqlAdmin(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db}';\nDROP DATABASE IF EXISTS ${db};\nDROP ROLE IF EXISTS ${db};\n`,
        port,
      );
    },
  };
}
