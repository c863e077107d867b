import { PassThrough } from "node:stream";
import type { EngineEvent } from "@pulumi/pulumi/automation/index.js";
import { describe, expect, it } from "vitest";
import { formatSummary, Progress } from "../../../scripts/lib/progress.ts";
import { matchUsers } from "../../../scripts/rotate.ts";

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
  it("counts users done when their delivery is, failures by user, and summarises", () => {
    const out = new PassThrough();
    let text = "";
    out.on("data", (c) => {
      text += String(c);
    });
    const p = new Progress("up", "dev", out, false);
    p.setPlan({ delivered: ["alice@Default", "bob@Default", "carol@Default"], credentialOnly: [] });
    p.onEvent(ev("resOutputsEvent", "TotpCredential", "alice@Default", "create"));
    p.onEvent(ev("resOutputsEvent", "TotpDelivery", "alice@Default", "create"));
    p.onEvent(
      ev("resOutputsEvent", "TotpCredential", "bob@Default", "update", {
        old: { outputs: { fingerprint: "a" } },
        new: { outputs: { fingerprint: "b" } },
      }),
    );
    p.onEvent(ev("resOutputsEvent", "TotpDelivery", "bob@Default", "create-replacement"));
    p.onEvent(ev("resOutputsEvent", "TotpDelivery", "bob@Default", "replace"));
    p.onEvent({
      sequence: 0,
      timestamp: 0,
      diagnosticEvent: {
        urn: `urn:pulumi:s::keystone-totp::${T}:TotpDelivery::carol@Default`,
        message: "error: [E_SMTP] 550 no such mailbox\n",
        severity: "error",
        color: "never",
      },
    } as unknown as EngineEvent);
    p.onEvent(ev("resOpFailedEvent", "TotpDelivery", "carol@Default", "create"));
    const s = p.finish();
    expect(s.users).toBe(3);
    expect(s.enrolled).toEqual(["alice@Default"]);
    expect(s.rotated).toEqual(["bob@Default"]);
    expect(s.messages).toBe(2);
    expect(s.failed).toEqual([{ user: "carol@Default", error: "error: [E_SMTP] 550 no such mailbox" }]);
    expect(text).toMatch(/progress: \[#+\.*\] 2\/3 users {2}1 failed/);
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
