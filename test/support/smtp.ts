/**
 * Support for the mail tests. Mainly a real SMTP server (the `smtp-server` package) on
 * 127.0.0.1 and a random port: it keeps every message it receives, counts connections, and can be told to reject a
 * recipient or sender, to refuse a message after its data (5xx to the final dot), to lose the
 * connection before answering (at RCPT TO, or after storing a message, before its final reply: an
 * outcome the client cannot know), to go down and come back, to require a login with a random password, and
 * to offer STARTTLS or implicit TLS with a self-signed certificate made at test time by the
 * `openssl` command. Also: decoding QR PNGs with `zbarimg`, a sample enrollment input, and
 * parsing raw messages with mailparser.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ParsedMail, simpleParser } from "mailparser";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import type { EnrollmentMessageInput } from "../../lib/mail/message.ts";
import { fingerprint, generateSecret } from "../../lib/totp/secret.ts";
import { otpauthUri } from "../../lib/totp/uri.ts";
import { registerSecrets } from "./secrets.ts";

/** Grace the server gives open sessions when it goes down, in milliseconds. */
const CLOSE_GRACE_MS = 100;
const HOST = "127.0.0.1";

/** One message as the server received it. */
export interface ReceivedMessage {
  /** Envelope sender (MAIL FROM). */
  readonly from: string;
  /** Envelope recipients (RCPT TO), lower case. */
  readonly to: readonly string[];
  /** The raw RFC 5322 message. */
  readonly raw: Buffer;
  /** Whether the session was encrypted (STARTTLS or implicit TLS). */
  readonly secure: boolean;
  /** The logged-in user, if any. */
  readonly user: string | undefined;
}

/** A self-signed certificate for 127.0.0.1 and localhost. */
export interface TestCertificate {
  readonly keyPem: string;
  readonly certPem: string;
  /** The certificate's file, to pass as the CA (`smtpCaFile`). */
  readonly certFile: string;
}

/** How a server loses its reply (see {@link TestSmtpServer.loseReply}). */
export type LostReply = "drop-at-rcpt" | "drop-after-data" | "silent-after-data";

/** How the server behaves. */
export interface TestSmtpOptions {
  /** Require AUTH with a random user and password; default false. */
  readonly auth?: boolean;
  /** `starttls`: offer STARTTLS; `implicit`: TLS from the first byte (SMTPS); default none. */
  readonly tls?: "starttls" | "implicit";
}

/** A running test server. */
export interface TestSmtpServer {
  readonly host: string;
  readonly port: number;
  /** The AUTH user and password, when `auth` is set (the password is registered as a secret). */
  readonly user: string | undefined;
  readonly password: string | undefined;
  /** The certificate, when `tls` is set. */
  readonly certificate: TestCertificate | undefined;
  /** `smtp://` or `smtps://` with the login, if any. */
  readonly url: string;
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** Every message received, in order. */
  readonly received: readonly ReceivedMessage[];
  /** Errors of failed sessions (e.g. a TLS handshake the client aborted), in order. */
  readonly sessionErrors: readonly Error[];
  /** The raw messages received for one recipient. */
  messagesFor(address: string): Buffer[];
  /** Answers RCPT TO for this address with `code` (default 550). */
  rejectRecipient(address: string, code?: number): void;
  /** Accepts this address again after {@link TestSmtpServer.rejectRecipient}. */
  acceptRecipient(address: string): void;
  /** Answers MAIL FROM for this address with 553. */
  rejectSender(address: string): void;
  /** Answers the end of a message to this address with `code` (default 554): refused after its data. */
  rejectData(address: string, code?: number): void;
  /**
   * For this address: `drop-at-rcpt` destroys the connection on its RCPT TO (before any data);
   * `drop-after-data` stores the message, then destroys the connection instead of answering it
   * (the client sent everything and never learns that it was stored); `silent-after-data` stores
   * it and never answers (the client times out).
   */
  loseReply(address: string, how: LostReply): void;
  /** Undoes {@link TestSmtpServer.rejectData} and {@link TestSmtpServer.loseReply} for this address. */
  answerNormally(address: string): void;
  /** Stops listening and drops open sessions. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  /** Stops for good and removes the certificate files. */
  close(): Promise<void>;
}

/** Whether the `openssl` command can be run. */
export function opensslAvailable(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes a self-signed P-256 certificate for IP 127.0.0.1 and DNS localhost, valid one day.
 *
 * @returns undefined if `openssl` is not installed.
 */
export function makeSelfSignedCertificate(dir: string): TestCertificate | undefined {
  if (!opensslAvailable()) return undefined;
  const keyFile = join(dir, "key.pem");
  const certFile = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "1",
      "-subj",
      "/CN=keystone-totp test SMTP",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { stdio: "ignore" },
  );
  return { keyPem: readFileSync(keyFile, "utf8"), certPem: readFileSync(certFile, "utf8"), certFile };
}

function listen(server: SMTPServer, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const net = server.listen(port, HOST, () => {
      server.off("error", reject);
      const address = net.address();
      resolve(typeof address === "object" && address !== null ? address.port : port);
    });
  });
}

/**
 * Starts a server on 127.0.0.1 and a free port.
 *
 * @throws if `tls` is asked for and `openssl` is missing: check {@link opensslAvailable} first.
 */
export async function startSmtpServer(options: TestSmtpOptions = {}): Promise<TestSmtpServer> {
  const dir = mkdtempSync(join(tmpdir(), "keystone-totp-smtp-"));
  const certificate = options.tls ? makeSelfSignedCertificate(dir) : undefined;
  if (options.tls && certificate === undefined) throw new Error("openssl is not installed: cannot make a certificate");
  const user = options.auth ? `relay-${randomBytes(3).toString("hex")}` : undefined;
  const password = options.auth ? `Smtp-${randomBytes(12).toString("base64url")}` : undefined;
  registerSecrets(password);

  const received: ReceivedMessage[] = [];
  const rejectedRecipients = new Map<string, number>();
  const rejectedSenders = new Set<string>();
  const rejectedData = new Map<string, number>();
  const lost = new Map<string, LostReply>();
  // Client sockets by remote port: a session knows its port, not its socket.
  const sockets = new Map<number, Socket>();
  const sessionErrors: Error[] = [];
  let connections = 0;

  const serverOptions: SMTPServerOptions = {
    logger: false,
    secure: options.tls === "implicit",
    hideSTARTTLS: options.tls !== "starttls",
    ...(certificate ? { key: certificate.keyPem, cert: certificate.certPem } : {}),
    authOptional: !options.auth,
    allowInsecureAuth: true,
    // Hiding STARTTLS is not enough: smtp-server would still upgrade with its built-in certificate.
    disabledCommands: [...(options.auth ? [] : ["AUTH"]), ...(options.tls === "starttls" ? [] : ["STARTTLS"])],
    closeTimeout: CLOSE_GRACE_MS,
    size: 10 * 1024 * 1024,
    onConnect(_session, callback) {
      connections += 1;
      callback();
    },
    onAuth(auth, _session, callback) {
      if (auth.username === user && auth.password === password) return callback(null, { user });
      callback(Object.assign(new Error("Invalid username or password"), { responseCode: 535 }));
    },
    onMailFrom(address, _session, callback) {
      if (rejectedSenders.has(address.address.toLowerCase())) {
        return callback(Object.assign(new Error("Sender address rejected: not owned by user"), { responseCode: 553 }));
      }
      callback();
    },
    onRcptTo(address, session, callback) {
      if (lost.get(address.address.toLowerCase()) === "drop-at-rcpt") {
        sockets.get(session.remotePort)?.destroy();
        return;
      }
      const code = rejectedRecipients.get(address.address.toLowerCase());
      if (code !== undefined) {
        return callback(Object.assign(new Error("Mailbox unavailable"), { responseCode: code }));
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        const to = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
        const refused = to.map((a) => rejectedData.get(a)).find((c) => c !== undefined);
        if (refused !== undefined) {
          return callback(Object.assign(new Error("Message refused by content filter"), { responseCode: refused }));
        }
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to,
          raw: Buffer.concat(chunks),
          secure: session.secure,
          user: typeof session.user === "string" ? session.user : undefined,
        });
        // Stored, but the reply is lost: the callback is never called.
        if (to.some((a) => lost.get(a) === "drop-after-data")) return sockets.get(session.remotePort)?.destroy();
        if (to.some((a) => lost.get(a) === "silent-after-data")) return;
        callback();
      });
    },
  };

  const makeServer = (): SMTPServer => {
    const srv = new SMTPServer(serverOptions);
    // Sessions that fail (a client refusing the certificate, say) are reported as 'error'
    // events, which would crash the test process without a listener; the client sees them too.
    srv.on("error", (err) => sessionErrors.push(err));
    srv.server.on("connection", (socket: Socket) => {
      const port = socket.remotePort ?? 0;
      sockets.set(port, socket);
      socket.once("close", () => sockets.delete(port));
    });
    return srv;
  };
  let server = makeServer();
  const port = await listen(server, 0);
  let running = true;

  const down = (): Promise<void> =>
    new Promise((resolve) => {
      if (!running) return resolve();
      running = false;
      server.close(() => resolve());
    });

  return {
    host: HOST,
    port,
    user,
    password,
    certificate,
    url: `${options.tls === "implicit" ? "smtps" : "smtp"}://${user ? `${user}:${encodeURIComponent(password ?? "")}@` : ""}${HOST}:${port}`,
    get connections() {
      return connections;
    },
    received,
    sessionErrors,
    messagesFor(address) {
      return received.filter((m) => m.to.includes(address.toLowerCase())).map((m) => m.raw);
    },
    rejectRecipient(address, code = 550) {
      rejectedRecipients.set(address.toLowerCase(), code);
    },
    acceptRecipient(address) {
      rejectedRecipients.delete(address.toLowerCase());
    },
    rejectSender(address) {
      rejectedSenders.add(address.toLowerCase());
    },
    rejectData(address, code = 554) {
      rejectedData.set(address.toLowerCase(), code);
    },
    loseReply(address, how) {
      lost.set(address.toLowerCase(), how);
    },
    answerNormally(address) {
      rejectedData.delete(address.toLowerCase());
      lost.delete(address.toLowerCase());
    },
    down,
    async up() {
      if (running) return;
      server = makeServer();
      await listen(server, port);
      running = true;
    },
    async close() {
      await down();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Helpers shared by the mail tests. */

/**
 * Decodes a QR code PNG with `zbarimg` (zbar-tools), independently of the `qrcode` package.
 *
 * @returns the text, exactly as encoded (no trailing newline).
 * @throws with install advice if zbarimg is missing, or if no code was found.
 */
export function decodeQrPng(png: Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), "keystone-totp-qr-"));
  const file = join(dir, "qr.png");
  try {
    writeFileSync(file, png, { mode: 0o600 });
    let out: Buffer;
    try {
      out = execFileSync("zbarimg", ["--raw", "-q", "-Sdisable", "-Sqrcode.enable", file], {
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { status?: number };
      if (err.code === "ENOENT") throw new Error("zbarimg is not installed: apt-get install -y zbar-tools");
      throw new Error(`zbarimg found no QR code (exit ${err.status ?? "?"})`);
    }
    return out.toString("utf8").replace(/\n$/, "");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A valid enrollment input for alice, with a fresh secret (registered for the secret scan). */
export function enrollmentInput(overrides: Partial<EnrollmentMessageInput> = {}): EnrollmentMessageInput {
  const secret = overrides.secret ?? generateSecret();
  registerSecrets(secret);
  const issuer = overrides.issuer ?? "ACME Cloud";
  const account = overrides.account ?? "alice@Default";
  return {
    to: "alice@example.com",
    displayName: "Alice Example",
    username: "alice",
    domain: "Default",
    issuer,
    account,
    secret,
    otpauthUri: otpauthUri({ issuer, account, secret }),
    fingerprint: fingerprint(secret),
    reason: "new",
    from: "ACME Cloud <noreply@example.com>",
    ...overrides,
  };
}

/**
 * The TOTP secret an enrollment message carries, read the way a user's phone reads it: from
 * the QR code (decoded by zbarimg). Registered for the secret scan; never print it.
 */
export async function secretOfMessage(raw: Buffer): Promise<string> {
  const mail = await parseMessage(raw);
  const png = mail.attachments.find((a) => a.contentType === "image/png");
  if (!png) throw new Error("the message has no QR code");
  const uri = decodeQrPng(png.content);
  const secret = new URL(uri).searchParams.get("secret") ?? "";
  registerSecrets(uri, secret);
  return secret;
}

/** Secrets already read from a message (each message is decoded once: zbarimg is a process). */
const secretsOfMessages = new WeakMap<Buffer, Promise<string | undefined>>();

/**
 * The TOTP secrets of every enrollment message `smtp` received for these addresses, in the order
 * received, without repeats: the secrets a test knows its users hold (Keystone 30 never returns
 * them). Messages without a QR code (notices) are skipped. Registered for the secret scan.
 */
export async function secretsSentTo(
  smtp: Pick<TestSmtpServer, "messagesFor">,
  addresses: readonly string[],
): Promise<string[]> {
  const out: string[] = [];
  for (const address of addresses) {
    for (const raw of smtp.messagesFor(address)) {
      let secret = secretsOfMessages.get(raw);
      if (secret === undefined) {
        secret = parseMessage(raw).then((mail) =>
          mail.attachments.some((a) => a.contentType === "image/png") ? secretOfMessage(raw) : undefined,
        );
        secretsOfMessages.set(raw, secret);
      }
      const s = await secret;
      if (s && !out.includes(s)) out.push(s);
    }
  }
  return out;
}

/** Parses a raw message with mailparser, keeping `cid:` links as they are. */
export function parseMessage(raw: Buffer): Promise<ParsedMail> {
  return simpleParser(raw, { keepCidLinks: true });
}
