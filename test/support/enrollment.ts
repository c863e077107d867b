/**
 * The handler context the enrollment unit tests share: the in-process Keystone double, a
 * mailer the test supplies, and a clock the test moves.
 */
import type { MailConfig } from "../../lib/mail/config.ts";
import type { Mailer } from "../../lib/mail/send.ts";
import type { EnrollmentContext } from "../../providers/enrollment/handlers.ts";
import { fakeKeystone } from "./fake-keystone.ts";

/**
 * A context whose clock starts at `t0` (ms since the epoch); `at(ms)` sets it to `t0 + ms`.
 *
 * @param mail - the test's mailer and whatever it records
 * @param initial - credentials the users already hold, by user ID
 */
export function enrollmentSetup<M extends { readonly mailer: Mailer }>(
  mail: M,
  mailConfig: MailConfig,
  t0: number,
  initial: Record<string, string[]> = {},
) {
  const ks = fakeKeystone(initial);
  let t = t0;
  const ctx: EnrollmentContext = {
    client: () => ks.client,
    keystone: () => ks.client,
    now: () => new Date(t),
    mailer: () => mail.mailer,
    mailConfig: () => mailConfig,
  };
  return {
    ks,
    mail,
    ctx,
    at: (ms: number) => {
      t = t0 + ms;
    },
  };
}
