/**
 * The mail server refuses one recipient with 550, through the real Pulumi engine, the real
 * Keystone and a real SMTP server: `up` exits 4 naming that user and address, the others are
 * delivered; with the recipient accepted again, the next `up` sends exactly one message, to
 * that user only. Counts checked: credentials per user in Keystone, messages per user (and that
 * the message's QR holds the secret Keystone has), exit codes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { each, type FaultFleet, type Person, startFaultFleet } from "../support/fleet.ts";

/** Users in the fleet at the start. */
const N = 3;

let f: FaultFleet;

beforeAll(async () => {
  f = await startFaultFleet({ prefix: "e2e-faults-mail", people: Array.from({ length: N }, (_, i) => `mail${i}`) });
});

afterAll(async () => {
  await f?.close();
});

describe("a recipient refused by the mail server, through the real engine", () => {
  it("a recipient refused with 550: exit 4 naming that user, the others delivered; accepted again, one message to them only", async () => {
    const { smtp, people } = f;
    const fresh = [...people];
    const refused = fresh[1] as Person;
    smtp.rejectRecipient(refused.email, 550);
    const before = smtp.received.length;
    const r = await f.up(["--continue-on-error"]);
    expect(r.code).toBe(4);
    const text = r.stdout + r.stderr;
    const name = refused.user.name.replace(/[.+]/g, "\\$&");
    const address = refused.email.replace(/[.+]/g, "\\$&");
    expect(text).toMatch(new RegExp(`enrollment message for ${name}@Default to ${address} not delivered`));
    for (const p of fresh) if (p !== refused) expect(text).not.toMatch(new RegExp(`message for ${p.user.name}@`));
    expect(smtp.received.length - before).toBe(2);
    for (const p of fresh) if (p !== refused) p.issued = 1;
    const mid = await f.tally(fresh);
    // The refused user's credential was withdrawn: no credential stays without its message.
    expect(mid.credentials).toEqual({ ...each(fresh, 1), [refused.user.name]: 0 });
    expect(mid.messages).toEqual({ ...each(fresh, 1), [refused.user.name]: 0 });

    smtp.acceptRecipient(refused.email);
    const again = await f.up();
    expect(again.code, again.stderr).toBe(0);
    expect(smtp.received.length - before).toBe(3);
    refused.issued = 1;
    const end = await f.tally(people);
    expect(end.credentials).toEqual(each(people, 1));
    expect(end.lost).toEqual([]);
    expect(end.duplicated).toBe(0);
    console.log(
      `faults: 550 for one of 3: exit ${r.code}, then exit ${again.code}; lost ${end.lost.length}, duplicated ${end.duplicated}`,
    );
  });

  it("no secret in any output or in state", async () => {
    expect(await f.leaks()).toBe(0);
  });
});
