/**
 * Unconfirmed deliveries, as the program's `deliveryUnconfirmed` stack output lists them: users
 * whose enrollment message was sent to the mail server, but whose connection ended before the
 * server's final reply. The message may have arrived, so nothing was undone (the secret stays
 * valid) and the state records it; the run is not a success either, so the operator commands
 * read this list after `up` and end non-zero on it, as for failed retirements.
 */
import { EXIT_CODES } from "../../lib/errors.ts";

/** The stack output's name (see index.ts). */
export const DELIVERY_UNCONFIRMED_OUTPUT = "deliveryUnconfirmed";

/** One user of the `deliveryUnconfirmed` stack output. */
export interface UnconfirmedUser {
  /** The user's key (`name@domain`, the resource's name). */
  readonly user: string;
  /** When the attempt ended (ISO 8601). */
  readonly at: string;
  /** `E_SMTP_UNCONFIRMED`. */
  readonly code: string;
  readonly error: string;
}

/** The unconfirmed deliveries in a stack's outputs (`up`'s result); none when the output is absent. */
export function unconfirmedDeliveriesOf(
  outputs: Readonly<Record<string, { value?: unknown } | undefined>>,
): UnconfirmedUser[] {
  const v = outputs[DELIVERY_UNCONFIRMED_OUTPUT]?.value;
  if (!Array.isArray(v)) return [];
  return v.flatMap((u: Record<string, unknown>) =>
    u && typeof u.user === "string"
      ? [
          {
            user: u.user,
            at: String(u.at ?? ""),
            code: typeof u.code === "string" ? u.code : "E_SMTP_UNCONFIRMED",
            error: String(u.error ?? ""),
          },
        ]
      : [],
  );
}

/**
 * One line for the operator: who, what happened (the error names the server, the address and
 * the Message-ID, and says that the next run sends the message again), and when.
 */
export function formatUnconfirmedDelivery(u: UnconfirmedUser): string {
  return `delivery unconfirmed: ${u.user}: [${u.code}] ${u.error} (at ${u.at})`;
}

/** The exit code for unconfirmed deliveries: a mail failure's (4). */
export function unconfirmedExitCode(): number {
  return EXIT_CODES.E_SMTP_UNCONFIRMED;
}
