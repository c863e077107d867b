/**
 * The size of a measurement's state: what `pulumi stack export` prints (as issue 5 counts it),
 * what the file backend keeps on disk (and rewrites after every step), and a breakdown by
 * resource type and by field, to show what to cut.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Stack } from "./stack.ts";

/** Characters of a failed export's stderr kept in the error. */
const ERROR_TAIL = 2000;
/** JSON punctuation around a field, bytes: `"k":` and `,`, counted with each field. */
const FIELD_OVERHEAD = 4;

/** State size summed over a measurement's stacks, in bytes. */
export interface StateSize {
  /** `pulumi stack export` as printed (indented). */
  bytes: number;
  /** The same, compact. */
  compactBytes: number;
  /** The checkpoint files in the backend. */
  checkpointBytes: number;
  /** The resources' `__provider` inputs and outputs (the serialized provider code). */
  providerBytes: number;
  resources: number;
  /** Compact bytes by resource type (`TotpEnrollment`, ...). */
  byType: Record<string, number>;
  /** Compact bytes by `type.field` and `type.inputs.key` / `type.outputs.key`. */
  byField: Record<string, number>;
}

function add(m: Record<string, number>, k: string, v: number): void {
  m[k] = (m[k] ?? 0) + v;
}

/** Adds one exported resource to the type and field breakdowns. */
function addResource(size: StateSize, res: Record<string, unknown>): void {
  size.resources++;
  const type = String(res.type).split(":").pop() ?? String(res.type);
  add(size.byType, type, Buffer.byteLength(JSON.stringify(res)));
  for (const [field, v] of Object.entries(res)) {
    if ((field === "inputs" || field === "outputs") && v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        const bytes = Buffer.byteLength(JSON.stringify(x)) + k.length + FIELD_OVERHEAD;
        add(size.byField, `${type}.${field}.${k}`, bytes);
        if (k === "__provider") size.providerBytes += bytes;
      }
    } else add(size.byField, `${type}.${field}`, Buffer.byteLength(JSON.stringify(v)) + field.length + FIELD_OVERHEAD);
  }
}

/** Bytes of the stacks' checkpoint files under `dir` (the file backend names them `<stack>.json`). */
function checkpointBytes(dir: string, stacks: readonly string[]): number {
  let bytes = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) bytes += checkpointBytes(p, stacks);
    else if (stacks.some((s) => e.name === `${s}.json`)) bytes += statSync(p).size;
  }
  return bytes;
}

/** `pulumi stack export` of every stack of `stack`, summed, and the checkpoints' size on disk. */
export async function exportState(stack: Stack): Promise<StateSize> {
  const size: StateSize = {
    bytes: 0,
    compactBytes: 0,
    checkpointBytes: 0,
    providerBytes: 0,
    resources: 0,
    byType: {},
    byField: {},
  };
  for (const name of stack.stacks()) {
    const r = await stack.pulumi(["stack", "export"], name);
    if (r.code !== 0) throw new Error(`pulumi stack export failed: ${r.stderr.slice(-ERROR_TAIL)}`);
    const dep = JSON.parse(r.stdout) as { deployment: { resources?: Record<string, unknown>[] } };
    size.bytes += Buffer.byteLength(r.stdout);
    size.compactBytes += Buffer.byteLength(JSON.stringify(dep));
    for (const res of dep.deployment.resources ?? []) addResource(size, res);
  }
  size.checkpointBytes = checkpointBytes(join(stack.dir, "backend"), stack.stacks());
  return size;
}
