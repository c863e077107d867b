import { describe, expect, it } from "vitest";
import { DIY_PARALLEL_ENV, serialisePostgresListing } from "../../../../operator/backend/bucket.ts";

describe("serialisePostgresListing", () => {
  it.each(["postgres://u:p@db:5432/state", "postgresql://u:p@db/state?sslmode=verify-full"])(
    "sets one reader at a time on the PostgreSQL backend (%s)",
    (url) => {
      const env: NodeJS.ProcessEnv = { PULUMI_BACKEND_URL: url };
      expect(serialisePostgresListing(env)).toBe(true);
      expect(env[DIY_PARALLEL_ENV]).toBe("1");
    },
  );

  it("keeps the operator's own value", () => {
    const env: NodeJS.ProcessEnv = { PULUMI_BACKEND_URL: "postgres://db/state", [DIY_PARALLEL_ENV]: "3" };
    expect(serialisePostgresListing(env)).toBe(false);
    expect(env[DIY_PARALLEL_ENV]).toBe("3");
  });

  it.each([undefined, "file:///var/lib/state", "s3://bucket", "https://api.pulumi.com"])(
    "leaves other backends alone (%s)",
    (url) => {
      const env: NodeJS.ProcessEnv = url === undefined ? {} : { PULUMI_BACKEND_URL: url };
      expect(serialisePostgresListing(env)).toBe(false);
      expect(env[DIY_PARALLEL_ENV]).toBeUndefined();
    },
  );
});
