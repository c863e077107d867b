/**
 * What a stack's state says about the next run, read right after a successful `up`: whether
 * some resource still has work pending (a run now would change something), and the first time
 * at which the clock alone gives one work (a scheduled rotation, the end of a grace window).
 *
 * The answer comes from the providers' own `diff` and `dueAt` functions, run on each resource's
 * stored inputs and outputs exactly as the engine would hand them over when nothing in the
 * program's inputs changed: the rules stay in one place, the providers. What counts as pending:
 * a message whose delivery is unconfirmed, a failed retirement, enforcement waiting for a
 * delivery, a state of an earlier shape, a user recorded open to a TOTP code alone, a pending
 * operation of a killed run, a resource of a kind this module does not know.
 */
import * as credential from "../../providers/credential/handlers.ts";
import * as enrollment from "../../providers/enrollment/handlers.ts";
import * as mfa from "../../providers/mfa/handlers.ts";

/**
 * How the engine's type of every dynamic resource starts (`pulumi-nodejs:dynamic:Resource`, or
 * `pulumi-nodejs:dynamic/keystone-totp:TotpEnrollment` with a type name); the runtime file in
 * `__provider` says which provider it is.
 */
const DYNAMIC_TYPE = /^pulumi-nodejs:dynamic[:/]/;
/** How a stored `__provider` names its runtime file (providers/runtime/*.cjs). */
const RUNTIME_FILE = /\b(credential|enrollment|mfa|delivery)\.cjs\b/;

/** The verdict on one stack's state. */
export interface StateVerdict {
  /** Why a run now would change something; undefined when it would change nothing. */
  readonly pending: string | undefined;
  /** When the clock alone first gives a resource work; undefined when it never does. */
  readonly dueAt: Date | undefined;
}

/** One resource of an exported deployment, as far as this module reads it. */
interface StateResource {
  readonly urn?: string;
  readonly type?: string;
  readonly custom?: boolean;
  readonly delete?: boolean;
  readonly pendingReplacement?: boolean;
  readonly inputs?: Record<string, unknown>;
  readonly outputs?: Record<string, unknown>;
}

/** What each provider's stored resources say, at time `at`. */
function resourceVerdict(r: StateResource, at: Date): { pending?: string; dueAt?: Date | undefined } {
  const name = r.urn?.split("::").pop() ?? "(unnamed)";
  if (r.delete === true || r.pendingReplacement === true) return { pending: `${name}: a replacement is unfinished` };
  if (!DYNAMIC_TYPE.test(r.type ?? "")) return {};
  const olds = r.outputs ?? {};
  const news = r.inputs ?? {};
  const kind = RUNTIME_FILE.exec(String(news.__provider ?? ""))?.[1];
  switch (kind) {
    case "enrollment": {
      const d = enrollment.diff(olds, news, at);
      if (d.changes || d.replaces.length > 0)
        return { pending: `${name}: work pending (delivery, retirement, posture)` };
      return { dueAt: enrollment.dueAt(olds, news) };
    }
    case "credential": {
      const d = credential.diff(olds, news, at);
      if (d.changes || d.replaces.length > 0)
        return { pending: `${name}: work pending (rotation, retirement, posture)` };
      return { dueAt: credential.dueAt(olds, news) };
    }
    case "mfa": {
      if (olds.waiting === true) return { pending: `${name}: enforcement waits for a delivery` };
      const d = mfa.diff(olds, news);
      return d.changes || d.replaces.length > 0 ? { pending: `${name}: enforcement has work pending` } : {};
    }
    default:
      // A 0.1 TotpDelivery (upgraded by the next run) or a kind this version does not know.
      return { pending: `${name}: a resource of an earlier or unknown kind` };
  }
}

/**
 * The verdict on an exported deployment (`stack.exportStack().deployment`) at time `at`.
 * Anything it cannot read counts as pending: a wrong "nothing to do" would skip real work, a
 * wrong "pending" only costs one run.
 */
export function stateVerdict(deployment: unknown, at: Date): StateVerdict {
  const d = (deployment ?? {}) as { resources?: unknown; pending_operations?: unknown };
  if (Array.isArray(d.pending_operations) && d.pending_operations.length > 0) {
    return { pending: "a killed run left pending operations", dueAt: undefined };
  }
  if (!Array.isArray(d.resources)) return { pending: "the state could not be read", dueAt: undefined };
  let dueAt: Date | undefined;
  for (const r of d.resources as StateResource[]) {
    const v = resourceVerdict(r, at);
    if (v.pending) return { pending: v.pending, dueAt: undefined };
    dueAt = credential.earliest(dueAt, v.dueAt);
  }
  return { pending: undefined, dueAt };
}
