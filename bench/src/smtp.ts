/**
 * The bench's SMTP sink: a real SMTP server (the `smtp-server` package) on 127.0.0.1 and a free
 * port that accepts every message, counts connections and messages, and keeps nothing. The
 * tests' server (test/support/smtp.ts) keeps every message to read it back and can fail on
 * demand; the bench needs neither, and at 10,000 users keeping the messages would cost the
 * bench's process (pinned with Keystone in the split layout) hundreds of MB.
 */
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";

const HOST = "127.0.0.1";
/** Grace given to open sessions when the sink closes, ms: the runs have ended by then. */
const CLOSE_GRACE_MS = 100;
/** The largest message accepted, bytes (an enrollment message with its QR code is a few KB). */
const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;

/** A running sink. */
export interface SmtpSink {
  /** `smtp://127.0.0.1:PORT`, for the program's `smtpUrl`. */
  readonly url: string;
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** Messages received in full so far. */
  readonly messages: number;
  /** Stops listening and drops open sessions. */
  close(): Promise<void>;
}

/** Starts a sink on 127.0.0.1 and a free port: plain SMTP, no login. */
export async function startSmtpSink(): Promise<SmtpSink> {
  let connections = 0;
  let messages = 0;
  const server = new SMTPServer({
    logger: false,
    authOptional: true,
    // Hiding STARTTLS is not enough: smtp-server would still upgrade with its built-in certificate.
    hideSTARTTLS: true,
    disabledCommands: ["AUTH", "STARTTLS"],
    closeTimeout: CLOSE_GRACE_MS,
    size: MAX_MESSAGE_BYTES,
    onConnect(_session, callback) {
      connections += 1;
      callback();
    },
    onData(stream, _session, callback) {
      stream.on("end", () => {
        messages += 1;
        callback();
      });
      stream.resume();
    },
  });
  // A session the client drops (the engine stopping a provider mid-send) is an 'error' event,
  // which would end the bench without a listener; the program reports its own side of it.
  server.on("error", () => {});
  server.listen(0, HOST);
  await once(server.server, "listening");
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://${HOST}:${port}`,
    get connections() {
      return connections;
    },
    get messages() {
      return messages;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
