import { PassThrough } from "node:stream";
import type { EngineEvent } from "@pulumi/pulumi/automation/index.js";
import { describe, expect, it } from "vitest";
import { formatSummary, Progress } from "../../../../operator/commands/progress.ts";
import { matchUsers } from "../../../../scripts/rotate.ts";

const T = "pulumi-nodejs:dynamic/keystone-totp";
function ev(
  kind: "resOutputsEvent" | "resourcePreEvent" | "resOpFailedEvent",
  type: string,
  name: string,
  op: string,
  extra = {},
) {
  const metadata = {
    op,
    urn: `urn:pulumi:s::keystone-totp::${T}:${type}::${name}`,
    type: `${T}:${type}`,
    provider: "",
    ...extra,
  };
  return { sequence: 0, timestamp: 0, [kind]: { metadata, status: 0, steps: 0 } } as unknown as EngineEvent;
}

describe("progress", () => {
  it("counts users done when their enrollment is, messages, rotations, retirements, failures by user", () => {
    const out = new PassThrough();
    let text = "";
    out.on("data", (c) => {
      text += String(c);
    });
    const p = new Progress("up", "dev", out, false);
    p.setPlan({ delivered: ["alice@Default", "bob@Default", "carol@Default", "dave@Default"], credentialOnly: [] });
    p.onEvent(ev("resOutputsEvent", "TotpEnrollment", "alice@Default", "create"));
    p.onEvent(
      ev("resOutputsEvent", "TotpEnrollment", "bob@Default", "update", {
        old: { outputs: { fingerprint: "a", messageId: "<1@x>" } },
        new: { outputs: { fingerprint: "b", messageId: "<2@x>" } },
      }),
    );
    // A retirement after the grace window: no new secret, no message.
    p.onEvent(
      ev("resOutputsEvent", "TotpEnrollment", "dave@Default", "update", {
        old: { outputs: { fingerprint: "d", messageId: "<3@x>" } },
        new: { outputs: { fingerprint: "d", messageId: "<3@x>", retiredAt: "2026-11-28T00:00:00Z" } },
      }),
    );
    p.onEvent({
      sequence: 0,
      timestamp: 0,
      diagnosticEvent: {
        urn: `urn:pulumi:s::keystone-totp::${T}:TotpEnrollment::carol@Default`,
        message: "error: [E_SMTP] 550 no such mailbox\n",
        severity: "error",
        color: "never",
      },
    } as unknown as EngineEvent);
    p.onEvent(ev("resOpFailedEvent", "TotpEnrollment", "carol@Default", "create"));
    const s = p.finish();
    expect(s.users).toBe(4);
    expect(s.enrolled).toEqual(["alice@Default"]);
    expect(s.rotated).toEqual(["bob@Default"]);
    expect(s.retired).toEqual(["dave@Default"]);
    expect(s.messages).toBe(2);
    expect(s.failed).toEqual([{ user: "carol@Default", error: "error: [E_SMTP] 550 no such mailbox" }]);
    expect(text).toMatch(/progress: \[#+\.*\] 3\/4 users {2}1 failed/);
    const summary = formatSummary(s);
    expect(summary).toContain("enrolled 1: alice@Default");
    expect(summary).toContain("carol@Default: error: [E_SMTP] 550 no such mailbox");
  });
});

describe("rotate: naming users", () => {
  const keys = ["alice@Default", "Bob@eng", "bob@Default"];
  it("matches exactly, then case-insensitively when unambiguous, and defaults the domain", () => {
    expect(matchUsers(["alice@Default", "bob@ENG", "alice"], keys)).toEqual({
      keys: ["alice@Default", "Bob@eng"],
      unknown: [],
    });
    expect(matchUsers(["carol@Default", "ALICE@default"], keys)).toEqual({
      keys: ["alice@Default"],
      unknown: ["carol@Default"],
    });
  });
});
