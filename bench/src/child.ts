/**
 * Runs a child process to its end and collects what it printed: the floor process, the
 * `openstack` loop and the `pulumi` commands of the stacks all need no more than this.
 */
import { spawn } from "node:child_process";

/** What a child printed, and how it ended (-1: killed by a signal). */
export interface ChildOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** How to run a child. */
export interface ChildOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Written to its stdin, which is then closed; without it stdin is not open. */
  readonly input?: string;
  /** Called with each chunk of its stderr as it comes (progress the caller relays). */
  readonly onStderr?: (text: string) => void;
}

/** Runs `argv` (command and arguments); rejects only when it cannot be started. */
export function runChild(argv: readonly string[], options: ChildOptions = {}): Promise<ChildOutput> {
  const [cmd, ...args] = argv;
  return new Promise((res, rej) => {
    const c = spawn(cmd as string, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    c.stdout?.on("data", (b: Buffer) => out.push(b));
    c.stderr?.on("data", (b: Buffer) => {
      err.push(b);
      options.onStderr?.(b.toString());
    });
    c.on("error", rej);
    c.on("close", (code) =>
      res({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
    );
    if (options.input !== undefined) c.stdin?.end(options.input);
  });
}
