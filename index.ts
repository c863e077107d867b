/**
 * The keystone-totp Pulumi program, as plain `pulumi up` runs it (Pulumi.yaml `main`): a thin
 * entry. The program itself is operator/program/program.ts, which the operator commands
 * (`npm run provision`, ...) run inline through the Automation API.
 */
export { default, type ProgramOptions } from "./operator/program/program.ts";
