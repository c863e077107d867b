/**
 * What the runtime shim (`provider.cjs`, plain CommonJS that TypeScript does not check) calls
 * on each resource's handler module, written down as types, and each handler module checked
 * against them: a handler module that loses or renames an export the shim calls fails
 * `tsc -p .` (npm run lint), instead of failing in a provider process at `pulumi up`.
 *
 * Keep in step with `makeProvider` in provider.cjs and the `shape` each `<resource>.cjs` passes.
 * Type-only: nothing here runs, and nothing imports it.
 */
import type * as credential from "../credential/handlers.ts";
import type * as enrollment from "../enrollment/handlers.ts";
import type * as delivery from "../legacy/delivery/handlers.ts";
import type * as mfa from "../mfa/handlers.ts";

/**
 * Properties as the engine hands them over. Typed `never` here so that each handler stays free
 * to declare its own, narrower inputs (a handler's parameter types are its own business: what
 * is checked is that the export exists, takes the shim's arguments in order, and answers in the
 * shape the shim returns to the engine).
 */
type Props = never;

/** Every handler module. */
export interface HandlerModule {
  /** `configure(req)`: the stack configuration, read by key. */
  configure(get: (key: string) => string | undefined): void;
  diff(olds: Props, news: Props): unknown;
  create(inputs: Props): Promise<{ readonly id: string; readonly outs: unknown }>;
  update(id: string, olds: Props, news: Props): Promise<{ readonly outs: unknown }>;
}

/** `shape.check`: the shim's `check(olds, news)` calls `check(news)`. */
export interface Checks {
  check(news: Props): unknown;
}

/** `shape.read` "handler" (the default): the shim's `read` calls the handler's. */
export interface Reads {
  read(id: string, props: Props): Promise<{ readonly id?: string; readonly props?: unknown }>;
}

/** Without `shape.deleteNoop`: the shim's `delete(id, props)` calls `remove(id, props)`. */
export interface Removes {
  remove(id: string, props: Props): Promise<void>;
}

/** Compiles only when `T` has every member of `U`. */
type Implements<T extends U, U> = T;

/** One row per `<resource>.cjs`, with the shape it passes to `makeProvider`. */
export type Contract = [
  // credential.cjs: { check: true }
  Implements<typeof credential, HandlerModule & Checks & Reads & Removes>,
  // enrollment.cjs: { check: true }
  Implements<typeof enrollment, HandlerModule & Checks & Reads & Removes>,
  // delivery.cjs (0.1 states only): { check: true, read: "props", deleteNoop: true }
  Implements<typeof delivery, HandlerModule & Checks>,
  // mfa.cjs: {}
  Implements<typeof mfa, HandlerModule & Reads & Removes>,
];
