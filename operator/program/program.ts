/**
 * The keystone-totp Pulumi program: read config, load the fleet, declare the resources,
 * export a summary. `index.ts` (plain `pulumi up`) and the operator commands (the Automation
 * API, operator/commands/engine.ts) both run it.
 *
 *   users CSV -> validated rows -> Keystone users (one list per domain) -> per user:
 *   TotpEnrollment (the credential and the message with its QR code) -> MfaEnforcement (opt-in)
 *
 * Accounts listed in the stack config map `keystone-totp:credentials` get a credential only.
 */
import * as pulumi from "@pulumi/pulumi";
import { engineMessage, KeystoneTotpError } from "../../lib/errors.ts";
import { isOn } from "../../lib/util/flag.ts";
import { omitResourceStackTraces } from "../../providers/stack-traces.ts";
import type { RotateRequest } from "../fleet/fleet.ts";
import { declareCredentials, declareEnrollments, ownSpecs, stackOutputs } from "./declare.ts";
import { loadFleet } from "./fleet.ts";

/** Set to 1 to let the SDK's debug messages reach the engine (shown by `pulumi up --debug`). */
export const SDK_DEBUG_ENV = "KEYSTONE_TOTP_SDK_DEBUG";

/** What an operator command asks of one run, beyond the stack's configuration. */
export interface ProgramOptions {
  /** Rotate these users now (`npm run rotate`). */
  readonly rotate?: RotateRequest | undefined;
  /** Grace window for this run's rotations, in hours, instead of `rotationGraceHours`. */
  readonly graceHours?: number | undefined;
  /** Told which users this run declares (resource names), for progress reporting. */
  readonly onPlan?: ((plan: { delivered: string[]; credentialOnly: string[] }) => void) | undefined;
}

/**
 * The program: returns the stack outputs.
 *
 * @throws {pulumi.RunError} `[E_...] message` for every error of ours (no stack trace to bury it).
 */
export default async function program(options: ProgramOptions = {}) {
  quietSdkDebug();
  // A fleet's state is rewritten after every step: the ~500 bytes of file paths Pulumi would
  // record per resource are not worth that (see stack-traces.ts).
  omitResourceStackTraces();
  try {
    const fleet = await loadFleet(options.rotate);
    options.onPlan?.({
      delivered: fleet.members.map((m) => m.name),
      credentialOnly: ownSpecs(fleet).map((s) => s.name),
    });
    const enrollments = declareEnrollments(fleet, options.graceHours);
    const extra = declareCredentials(fleet);
    return stackOutputs(fleet, enrollments, extra);
  } catch (e) {
    // Our errors carry a complete message; a stack trace would only bury it.
    if (e instanceof KeystoneTotpError) throw new pulumi.RunError(engineMessage(e));
    throw e;
  }
}

/**
 * The SDK sends the engine three debug messages per resource it registers ("Registering
 * resource", "RPC prepared", "RPC finished"), each a gRPC call, one after another, that the
 * engine decodes and drops unless run with --debug: on a no-op up, about a sixth of the
 * program's CPU and part of the engine's. The operator commands never ask for --debug. Done
 * when the program runs (not when this module is imported), and only for the program's run.
 */
function quietSdkDebug(): void {
  if (isOn(process.env[SDK_DEBUG_ENV])) return;
  (pulumi.log as { debug: (...args: unknown[]) => Promise<void> }).debug = () => Promise.resolve();
}
