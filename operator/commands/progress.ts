/**
 * Live progress and the end-of-run summary for engine runs, from the Automation API's event
 * stream: users done of total, failures, elapsed time, and what happened to whom.
 *
 * On a terminal it redraws one line on stderr (at most {@link REDRAW_MS} apart); elsewhere
 * (CI, cron, a log file) it prints a plain line every {@link LOG_EVERY_MS} or
 * {@link LOG_EVERY_FRACTION} of the work, so logs stay readable.
 */
import type { EngineEvent } from "@pulumi/pulumi/automation/index.js";
import { codeInEngineText } from "../../lib/errors.ts";
import { resourceName } from "../report/status.ts";

/** Shortest time between two redraws of the bar, in milliseconds. */
export const REDRAW_MS = 100;
/** Longest time between two plain progress lines, in milliseconds. */
export const LOG_EVERY_MS = 15_000;
/** A plain progress line also every this fraction of the users. */
export const LOG_EVERY_FRACTION = 0.1;
/** Width of the bar, in characters. */
const BAR_WIDTH = 28;

/** What the program declares, per user (resource name), so progress can count users. */
export interface RunPlan {
  /** Users with an enrollment message (done when their delivery is). */
  readonly delivered: readonly string[];
  /** Accounts with a credential only (done when the credential is). */
  readonly credentialOnly: readonly string[];
}

/** Outcome of a run, per user and in total. */
export interface RunSummary {
  readonly verb: string;
  readonly stack: string;
  readonly seconds: number;
  readonly users: number;
  readonly enrolled: readonly string[];
  /** Users given a new secret (scheduled, requested or after an address change). */
  readonly rotated: readonly string[];
  /** Users whose retiring credentials were deleted after the grace window. */
  readonly retired: readonly string[];
  readonly removed: readonly string[];
  readonly messages: number;
  /** Failed users with the first error line seen for each. */
  readonly failed: readonly { readonly user: string; readonly error: string }[];
}

type Kind = "credential" | "delivery" | "enrollment" | "mfa" | "other";

function kindOf(type: string): Kind {
  if (type.endsWith(":TotpCredential")) return "credential";
  if (type.endsWith(":TotpDelivery")) return "delivery";
  if (type.endsWith(":TotpEnrollment")) return "enrollment";
  if (type.endsWith(":MfaEnforcement")) return "mfa";
  return "other";
}

const CHANGING = new Set(["create", "update", "replace", "create-replacement", "delete", "delete-replaced"]);

/** Follows one run; feed it every engine event, then call {@link Progress.finish}. */
export class Progress {
  private readonly started = Date.now();
  private plan: RunPlan | undefined;
  private readonly expected = new Map<string, Kind>();
  private readonly done = new Set<string>();
  private readonly failed = new Map<string, string>();
  private readonly touched = new Set<string>();
  private readonly enrolled = new Set<string>();
  private readonly rotated = new Set<string>();
  private readonly retired = new Set<string>();
  private readonly removed = new Set<string>();
  private readonly errors = new Map<string, string>();
  private messages = 0;
  private lastDraw = 0;
  private lastLog = 0;
  private lastLoggedDone = 0;
  private drawn = false;

  private readonly verb: string;
  private readonly stack: string;
  private readonly out: NodeJS.WritableStream;
  private readonly tty: boolean;

  /**
   * @param out - where progress goes (default stderr, so stdout stays for results).
   * @param tty - redraw one line (default: whether stderr is a terminal).
   */
  constructor(
    verb: string,
    stack: string,
    out: NodeJS.WritableStream = process.stderr,
    tty: boolean = Boolean(process.stderr.isTTY),
  ) {
    this.verb = verb;
    this.stack = stack;
    this.out = out;
    this.tty = tty;
  }

  /** Tells how many users to expect (the program calls this once it has read the CSV). */
  setPlan(plan: RunPlan): void {
    this.plan = plan;
    for (const n of plan.delivered) this.expected.set(n, "enrollment");
    for (const n of plan.credentialOnly) if (!this.expected.has(n)) this.expected.set(n, "credential");
    this.draw(true);
  }

  /** Users to do in total (known once the plan is in; before that, what the engine showed). */
  total(): number {
    return this.plan ? this.expected.size : this.touched.size;
  }

  /** Consumes one engine event. */
  onEvent(e: EngineEvent): void {
    if (e.resourcePreEvent) {
      const m = e.resourcePreEvent.metadata;
      if (kindOf(m.type) !== "other") this.touched.add(resourceName(m.urn));
    } else if (e.resOutputsEvent) {
      this.outputs(e.resOutputsEvent.metadata);
    } else if (e.resOpFailedEvent) {
      const name = resourceName(e.resOpFailedEvent.metadata.urn);
      this.failed.set(name, this.errors.get(name) ?? "failed");
    } else if (e.diagnosticEvent?.severity === "error" && e.diagnosticEvent.urn) {
      const name = resourceName(e.diagnosticEvent.urn);
      const line = firstErrorLine(e.diagnosticEvent.message);
      if (!this.errors.has(name)) this.errors.set(name, line);
      if (this.failed.has(name)) this.failed.set(name, this.errors.get(name) ?? line);
      if (this.tty) this.clear();
      if (this.tty) this.out.write(`error: ${name}: ${line}\n`);
    }
    this.draw(false);
  }

  private outputs(m: NonNullable<EngineEvent["resOutputsEvent"]>["metadata"]): void {
    const kind = kindOf(m.type);
    if (kind === "other") return;
    const name = resourceName(m.urn);
    this.touched.add(name);
    const op = m.op;
    if (kind === "credential") {
      if (op === "create") this.enrolled.add(name);
      else if (
        op === "update" &&
        (this.verb === "preview" || m.new?.outputs?.fingerprint !== m.old?.outputs?.fingerprint)
      ) {
        this.rotated.add(name);
      } else if (op === "delete") this.removed.add(name);
    } else if (kind === "delivery") {
      // A replacement reports both "create-replacement" and "replace": count the message once.
      if (op === "create" || op === "create-replacement") this.messages++;
      if (CHANGING.has(op) && m.new?.outputs?.retiredAt && m.new.outputs.retiredAt !== m.old?.outputs?.retiredAt) {
        this.retired.add(name);
      }
    }
    if (kind === "enrollment") {
      const o = m.old?.outputs;
      const n = m.new?.outputs;
      if (op === "create" || op === "create-replacement") {
        this.enrolled.add(name);
        this.messages++;
      } else if (op === "update") {
        if (this.verb === "preview" || n?.fingerprint !== o?.fingerprint) this.rotated.add(name);
        if (this.verb !== "preview" && n?.messageId !== undefined && n.messageId !== o?.messageId) this.messages++;
      } else if (op === "delete") this.removed.add(name);
      if (CHANGING.has(op) && n?.retiredAt && n.retiredAt !== o?.retiredAt) this.retired.add(name);
    }
    const expect = this.expected.get(name);
    if (expect === undefined ? this.plan === undefined : expect === kind) this.done.add(name);
  }

  private line(): string {
    if (!this.plan && this.touched.size === 0) {
      return `preparing (reading the users CSV, looking users up in Keystone)  ${fmtSecs((Date.now() - this.started) / 1000)}`;
    }
    const total = this.total();
    const done = Math.min(this.done.size, total || this.done.size);
    const secs = Math.round((Date.now() - this.started) / 1000);
    const failed = this.failed.size;
    const frac = total > 0 ? done / total : 0;
    const filled = Math.round(frac * BAR_WIDTH);
    const eta =
      done > 0 && done < total
        ? ` ~${fmtSecs((((Date.now() - this.started) / done) * (total - done)) / 1000)} left`
        : "";
    const bar = `[${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}]`;
    return `${bar} ${done}/${total} users  ${failed} failed  ${fmtSecs(secs)}${eta}`;
  }

  private clear(): void {
    if (this.drawn) this.out.write("\r\x1b[2K");
  }

  private draw(force: boolean): void {
    const now = Date.now();
    if (this.tty) {
      if (!force && now - this.lastDraw < REDRAW_MS) return;
      this.lastDraw = now;
      this.out.write(`\r\x1b[2K${this.verb}: ${this.line()}`);
      this.drawn = true;
      return;
    }
    const total = this.total();
    const step = Math.max(1, Math.ceil(total * LOG_EVERY_FRACTION));
    if (force || now - this.lastLog >= LOG_EVERY_MS || this.done.size - this.lastLoggedDone >= step) {
      if (total === 0 && !force) return;
      this.lastLog = now;
      this.lastLoggedDone = this.done.size;
      this.out.write(`progress: ${this.line()}\n`);
    }
  }

  /** Stops drawing and returns the summary. */
  finish(): RunSummary {
    this.draw(true);
    if (this.tty && this.drawn) this.out.write("\n");
    const sorted = (s: Set<string>) => [...s].sort();
    return {
      verb: this.verb,
      stack: this.stack,
      seconds: Math.round((Date.now() - this.started) / 100) / 10,
      users: this.total(),
      enrolled: sorted(this.enrolled),
      rotated: sorted(this.rotated),
      retired: sorted(this.retired),
      removed: sorted(this.removed),
      messages: this.messages,
      failed: [...this.failed].sort(([a], [b]) => a.localeCompare(b)).map(([user, error]) => ({ user, error })),
    };
  }
}

function fmtSecs(s: number): string {
  const t = Math.max(0, Math.round(s));
  return t < 60 ? `${t}s` : `${Math.floor(t / 60)}m${String(t % 60).padStart(2, "0")}s`;
}

/** The line of an engine error that says what failed (ours carry an `[E_...]` code). */
function firstErrorLine(message: string): string {
  const lines = message
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return (codeInEngineText(lines.join("\n"))?.line ?? lines[0] ?? "failed").slice(0, 300);
}

/** Renders the summary for people: what was done, to whom, and what failed. */
export function formatSummary(s: RunSummary, listLimit = 10): string {
  const list = (names: readonly string[]) =>
    names.length === 0
      ? ""
      : `: ${names.slice(0, listLimit).join(", ")}${names.length > listLimit ? `, ... (${names.length - listLimit} more)` : ""}`;
  // A preview reports what an `up` would do (an update may also be a label change).
  const w =
    s.verb === "preview"
      ? {
          enrol: "to enroll",
          rotate: "to update (rotate, relabel or retire old)",
          retire: "to retire",
          remove: "to remove",
          sent: "messages to send",
        }
      : {
          enrol: "enrolled",
          rotate: "rotated",
          retire: "old credentials retired",
          remove: "removed",
          sent: "enrollment messages sent",
        };
  const out = [
    `${s.verb} on stack ${s.stack}: ${s.users} users in ${s.seconds} s`,
    `  ${w.enrol} ${s.enrolled.length}${list(s.enrolled)}`,
    `  ${w.rotate} ${s.rotated.length}${list(s.rotated)}`,
    `  ${w.retire} ${s.retired.length}${list(s.retired)}`,
    `  ${w.remove} ${s.removed.length}${list(s.removed)}`,
    `  ${w.sent} ${s.messages}`,
    `  failed ${s.failed.length}`,
    ...s.failed.slice(0, 50).map((f) => `    ${f.user}: ${f.error}`),
  ];
  if (s.failed.length > 50) out.push(`    ... (${s.failed.length - 50} more)`);
  return `${out.join("\n")}\n`;
}
