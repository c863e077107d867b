/**
 * The bench's SMTP sink (bench/src/smtp.ts): counts connections and whole messages, keeps
 * nothing, and closes.
 */
import nodemailer from "nodemailer";
import { describe, expect, it } from "vitest";
import { startSmtpSink } from "../../../bench/src/smtp.ts";

describe("startSmtpSink", () => {
  it("counts the connections and messages of a pooled mailer", async () => {
    const sink = await startSmtpSink();
    try {
      expect(sink.url).toMatch(/^smtp:\/\/127\.0\.0\.1:\d+$/);
      const mailer = nodemailer.createTransport(`${sink.url}/?pool=true&maxConnections=1`);
      for (const i of [1, 2, 3]) {
        await mailer.sendMail({ from: "bench@example.com", to: `u${i}@example.com`, subject: "s", text: "t" });
      }
      mailer.close();
      expect(sink.messages).toBe(3);
      expect(sink.connections).toBe(1);
    } finally {
      await sink.close();
    }
  });
});
