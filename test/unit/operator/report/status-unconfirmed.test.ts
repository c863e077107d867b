/**
 * `status` for a user whose enrollment message the mail server never confirmed: not "ok", not
 * "not-delivered" (the credential was kept and the message may well have arrived), but
 * `delivery-unconfirmed`, with what happened; and the operator commands' reading of the
 * program's `deliveryUnconfirmed` stack output after `up`.
 */
import { describe, expect, it } from "vitest";
import {
  formatUnconfirmedDelivery,
  unconfirmedDeliveriesOf,
  unconfirmedExitCode,
} from "../../../../operator/commands/delivery-unconfirmed.ts";
import { renderStatusHtml } from "../../../../operator/report/html.ts";
import { buildStatus, countStatus, formatTable, type StateResource } from "../../../../operator/report/status.ts";

const T = "pulumi-nodejs:dynamic/keystone-totp";
const record = {
  at: "2027-01-10T00:00:00.000Z",
  code: "E_SMTP_UNCONFIRMED",
  error: "enrollment message for hal@Default to hal@example.com not confirmed: the message to hal@example.com was sent",
  reason: "new",
};

function enrollment(name: string, outputs: Record<string, unknown>): StateResource {
  return {
    urn: `urn:pulumi:dev::keystone-totp::${T}:TotpEnrollment::${name}`,
    type: `${T}:TotpEnrollment`,
    inputs: { email: `${name}@example.com` },
    outputs: {
      userId: `u-${name}`,
      email: `${name}@example.com`,
      credentialId: `c-${name}`,
      createdAt: "2027-01-10T00:00:00.000Z",
      rotatedAt: "2027-01-10T00:00:00.000Z",
      retiring: [],
      graceHours: 24,
      ...outputs,
    },
  };
}

describe("status of an unconfirmed delivery", () => {
  const resources = [
    enrollment("hal", { deliveryUnconfirmed: record }),
    enrollment("ida", { deliveredAt: "2027-01-10T00:00:00.000Z" }),
  ];
  const keystone = new Map([
    ["u-hal", ["c-hal"]],
    ["u-ida", ["c-ida"]],
  ]);

  it("shows the user as delivery-unconfirmed, with what happened; not as ok or not-delivered", () => {
    const rows = buildStatus(resources, keystone);
    expect(Object.fromEntries(rows.map((r) => [r.user, r.state]))).toEqual({
      hal: "delivery-unconfirmed",
      ida: "ok",
    });
    expect(rows[0]?.deliveryUnconfirmed).toEqual({ at: record.at, code: record.code, error: record.error });
    expect(rows[1]?.deliveryUnconfirmed).toBeUndefined();
    expect(formatTable(rows)).toMatch(/^hal +delivery-unconfirmed /m);
    const counts = countStatus(rows, new Date("2027-01-11T00:00:00Z"), keystone);
    expect(counts.byState["delivery-unconfirmed"]).toBe(1);
    expect(renderStatusHtml("t", rows, counts, new Date("2027-01-11T00:00:00Z"))).toContain(
      "Delivery not confirmed by the mail server",
    );
  });

  it("a credential gone from Keystone is still 'missing' first", () => {
    const rows = buildStatus(resources, new Map([["u-ida", ["c-ida"]]]));
    expect(rows[0]?.state).toBe("missing");
  });
});

describe("deliveryUnconfirmed stack output", () => {
  it("ends the run with exit 4 and a line naming the user and what happened", () => {
    const us = unconfirmedDeliveriesOf({ deliveryUnconfirmed: { value: [{ user: "hal@Default", ...record }] } });
    expect(us).toHaveLength(1);
    expect(unconfirmedExitCode()).toBe(4);
    expect(formatUnconfirmedDelivery(us[0] as (typeof us)[number])).toBe(
      `delivery unconfirmed: hal@Default: [E_SMTP_UNCONFIRMED] ${record.error} (at ${record.at})`,
    );
  });

  it("none listed, or a stack of an earlier version without the output: nothing to report", () => {
    expect(unconfirmedDeliveriesOf({ deliveryUnconfirmed: { value: [] } })).toEqual([]);
    expect(unconfirmedDeliveriesOf({ summary: { value: {} } })).toEqual([]);
  });
});
