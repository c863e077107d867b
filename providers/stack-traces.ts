/**
 * An opt-in cut of what Pulumi records per resource: the stack trace of the `new` that
 * declared it, about 500 bytes of the machine's file paths in every resource's state, which the
 * file backend rewrites into the checkpoint after every step (a cost that grows with the square
 * of the resource count). Nothing reads it back but `pulumi` error reports, which then point at
 * no line of the program.
 *
 * It changes a static method of `pulumi.Resource`, for every resource of the process, so it is
 * never a side effect of importing keystone-totp: a program calls it, before declaring its
 * resources.
 */
import * as pulumi from "@pulumi/pulumi";

/** The part of `pulumi.Resource` this patches; absent in SDKs before source positions. */
interface StackTraceHost {
  stackTrace?: (skip: number) => unknown[];
}

/** Whether {@link omitResourceStackTraces} has run in this process. */
export function resourceStackTracesOmitted(): boolean {
  return (pulumi.Resource as unknown as StackTraceHost).stackTrace === noStackTrace;
}

function noStackTrace(): unknown[] {
  return [];
}

/**
 * Declares every resource made after the call, in this process, by any package, without the
 * stack trace of the `new` that declared it. Idempotent; a no-op with an `@pulumi/pulumi` that
 * records none.
 *
 * @example
 * import { omitResourceStackTraces, TotpCredential } from "keystone-totp";
 * omitResourceStackTraces();
 * new TotpCredential("alice", { userName: "alice" });
 */
export function omitResourceStackTraces(): void {
  const host = pulumi.Resource as unknown as StackTraceHost;
  if (typeof host.stackTrace === "function") host.stackTrace = noStackTrace;
}
