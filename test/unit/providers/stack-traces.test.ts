/**
 * The stack-trace cut is opt-in: importing keystone-totp (the package entry, or this
 * repository's program) leaves Pulumi's resources as they are; omitResourceStackTraces() cuts
 * them. Before 0.3, importing index.ts patched pulumi.Resource for the whole process.
 */
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";

type Host = { stackTrace: (skip: number) => unknown[] };
const host = pulumi.Resource as unknown as Host;

describe("omitResourceStackTraces", () => {
  it("is not applied by importing the package entry or the program", async () => {
    const original = host.stackTrace;
    const api = await import("../../../providers/index.ts");
    await import("../../../index.ts");
    expect(host.stackTrace).toBe(original);
    expect(api.resourceStackTracesOmitted()).toBe(false);
    // Pulumi's own method records where a resource was declared.
    expect(original(0).length).toBeGreaterThan(0);
  });

  it("once called, resources are declared without a stack trace; calling it again changes nothing", async () => {
    const api = await import("../../../providers/index.ts");
    api.omitResourceStackTraces();
    const patched = host.stackTrace;
    expect(patched(0)).toEqual([]);
    expect(api.resourceStackTracesOmitted()).toBe(true);
    api.omitResourceStackTraces();
    expect(host.stackTrace).toBe(patched);
  });
});
