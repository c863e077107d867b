/**
 * Prints what `npm run demo` did: users enrolled, messages written, where to look.
 *
 * Usage: node scripts/demo-summary.ts [STACK]
 */
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { EXIT } from "../lib/errors.ts";
import { parseCommandLine, runCommand } from "../operator/commands/cli.ts";
import { DEFAULT_STACK } from "../operator/commands/options.ts";

export const HELP = `usage: node scripts/demo-summary.ts [STACK]

Prints what 'npm run demo' did on STACK (default ${DEFAULT_STACK}): users enrolled, messages
delivered, where the messages are.

exit codes: 0 ok, 1 the stack has no summary output, 64 usage
`;

async function main(argv: readonly string[]): Promise<number> {
  const { positionals } = parseCommandLine({ options: {}, positionals: [0, 1] }, argv);
  const stack = positionals[0] ?? DEFAULT_STACK;
  const outputs = JSON.parse(
    execFileSync("pulumi", ["stack", "output", "--json", "--stack", stack], { encoding: "utf8" }),
  ) as {
    summary?: { users: number; credentials: number; mail: string; mfaEnforced: boolean };
    deliveries?: number;
  };
  const s = outputs.summary;
  if (!s) {
    console.error(`demo-summary: stack ${stack} has no summary output; did 'pulumi up' fail?`);
    return EXIT.failed;
  }
  console.log("");
  console.log("keystone-totp demo");
  console.log(`  users enrolled:     ${s.users}`);
  console.log(`  messages delivered: ${outputs.deliveries ?? 0}`);
  console.log(`  mail:               ${s.mail}`);
  if (s.mail.startsWith("outbox: ")) {
    const dir = s.mail.slice("outbox: ".length);
    let files: string[] = [];
    try {
      files = readdirSync(dir).filter((f) => f.endsWith(".eml"));
    } catch {
      files = [];
    }
    console.log(`  messages in outbox: ${files.length} .eml files (open one in a mail client and scan its QR code)`);
  }
  console.log(
    `  MFA enforced:       ${s.mfaEnforced ? "yes" : "no (set keystone-totp:enforceMfa true to require password + TOTP)"}`,
  );
  console.log(`  state:              pulumi stack --stack ${stack} (npm run pulumi -- stack --stack ${stack})`);
  console.log("  demo users' passwords: .local/demo-passwords.json (mode 0600)");
  return EXIT.ok;
}

if (import.meta.main) await runCommand({ name: "demo-summary", help: HELP }, main);
