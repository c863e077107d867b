/**
 * What an operator sees: `provision up` in a real terminal (tmux) shows a live progress bar
 * and ends with a summary; `status --html` writes a page that a real browser (headless
 * Chromium) renders with its counts, table and both charts.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { adminClient, adminEnv, makeUser, REPO, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { TestStack } from "../support/pulumi.ts";
import { registerSecrets } from "../support/secrets.ts";
import { startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

const USERS = 8;
const tag = uniq();
const socket = `kt-${tag}`;
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let stack: TestStack;
let dir: string;
const users: TestUser[] = [];

function tmux(...args: string[]): string {
  return execFileSync("tmux", ["-L", socket, ...args], {
    encoding: "utf8",
    env: stack.environment({ TERM: "xterm-256color" }),
  });
}

beforeAll(async () => {
  admin = adminClient();
  for (let i = 0; i < USERS; i++) {
    const u = await makeUser(admin, `term${i}${tag}`);
    registerSecrets(u.password);
    users.push(u);
  }
  dir = mkdtempSync(join(tmpdir(), "kt-terminal-"));
  const csv = join(dir, "users.csv");
  writeFileSync(csv, `username,email\n${users.map((u, i) => `${u.name},term${i}.${tag}@example.com`).join("\n")}\n`);
  smtp = await startSmtpServer();
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD ?? "");
  stack = new TestStack("e2e-terminal", env);
  await stack.init();
  await stack.set("keystone-totp:usersCsv", csv);
  await stack.set("keystone-totp:smtpUrl", smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "noreply@example.com");
  await stack.set("keystone-totp:rotationDays", "30");
});

afterAll(async () => {
  try {
    tmux("kill-server");
  } catch {
    // already gone
  }
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await smtp?.close();
  for (const u of users) await deleteUser(admin, u.id).catch(() => undefined);
  admin?.close();
});

describe("in a real terminal", () => {
  it("provision up shows a progress bar of users, then a summary, and exits 0", async () => {
    const cmd = [
      "node",
      join(REPO, "scripts/provision.ts"),
      "up",
      "--yes",
      "--stack",
      stack.name,
      "--config-file",
      stack.configFile,
    ].join(" ");
    tmux("new-session", "-d", "-s", "run", "-x", "160", "-y", "45", `cd ${REPO} && ${cmd}; echo EXIT=$?; sleep 600`);
    const frames: string[] = [];
    const deadline = Date.now() + 240_000;
    let last = "";
    while (Date.now() < deadline) {
      last = tmux("capture-pane", "-p", "-t", "run");
      if (frames[frames.length - 1] !== last) frames.push(last);
      if (/EXIT=\d+/.test(last)) break;
      await new Promise((r) => setTimeout(r, 150));
    }
    // What the operator saw goes to the logs, where the secret scan checks it too.
    writeFileSync(join(REPO, ".local/logs", `terminal-${stack.name}.log`), frames.join("\n----\n"), { mode: 0o600 });
    expect(last).toMatch(/EXIT=0/);
    const bars = frames.flatMap((f) => [...f.matchAll(/up: \[([#.]+)\] (\d+)\/(\d+) users {2}(\d+) failed/g)]);
    expect(bars.length).toBeGreaterThan(0);
    expect(bars.every((m) => m[3] === String(USERS) && m[4] === "0")).toBe(true);
    expect(bars.some((m) => m[2] === String(USERS) && !m[1]?.includes("."))).toBe(true);
    expect(last).toContain(`up on stack ${stack.name}: ${USERS} users`);
    expect(last).toContain(`enrolled ${USERS}`);
    expect(last).toContain(`enrollment messages sent ${USERS}`);
    expect(last).toMatch(/engine output: .*\.local\/logs\/up-/);
    // On a terminal the engine's step-by-step output is kept out of the way.
    expect(last).not.toMatch(/\+ {2}keystone-totp:TotpEnrollment/);
    expect(smtp.received.length).toBe(USERS);
  });

  it("status --html writes a private page that headless Chromium renders with counts, table and both charts", () => {
    const file = join(dir, "reports", "status.html");
    const r = execFileSync(
      "node",
      [join(REPO, "scripts/status.ts"), "--html", file, "--stack", stack.name, "--config-file", stack.configFile],
      { cwd: REPO, env: stack.environment(), encoding: "utf8" },
    );
    expect(r).toContain(`${USERS} users: ${USERS} ok`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "reports")).mode & 0o777).toBe(0o700);
    const chromium = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,1400"];
    const dom = execFileSync("chromium", [...chromium, "--dump-dom", `file://${file}`], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 60_000,
    });
    expect(dom.match(/<tr class="s-ok">/g)).toHaveLength(USERS);
    expect(dom).toContain("Users enrolled over time");
    expect(dom.match(/<svg /g)).toHaveLength(2);
    const png = join(dir, "status.png");
    execFileSync("chromium", [...chromium, `--screenshot=${png}`, `file://${file}`], {
      stdio: "ignore",
      timeout: 60_000,
    });
    const img = PNG.sync.read(readFileSync(png));
    let blue = 0;
    let orange = 0;
    for (let i = 0; i < img.data.length; i += 4) {
      const [r2, g, b] = [img.data[i] ?? 0, img.data[i + 1] ?? 0, img.data[i + 2] ?? 0];
      if (Math.abs(r2 - 0x2f) < 24 && Math.abs(g - 0x6f) < 24 && Math.abs(b - 0xde) < 24) blue++;
      if (Math.abs(r2 - 0xe0) < 24 && Math.abs(g - 0x8a) < 24 && Math.abs(b - 0x1e) < 24) orange++;
    }
    // the enrollment line (blue) and the bar of rotations due in 30 days (orange) are drawn
    expect(blue).toBeGreaterThan(30);
    expect(orange).toBeGreaterThan(300);
  });
});
