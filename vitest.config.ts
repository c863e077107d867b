import { defineConfig } from "vitest/config";

/**
 * The compatibility suite, run against every other Keystone release (scripts/test.sh,
 * docs/releases.md): what operators upgrading Keystone depend on. Onboarding, rerun and edits
 * (fleet), posture and enforcement, rotation, a lost create answer and Keystone stopped
 * mid-create (crash leftovers), refresh of a standalone credential, the doctor, and the
 * operator's own account (refused; an MFA-protected operator).
 */
export const COMPAT = [
  "test/integration/lib/keystone/release.test.ts",
  "test/integration/lib/keystone/operator-mfa.test.ts",
  "test/integration/operator/doctor/*.test.ts",
  "test/e2e/fleet.test.ts",
  "test/e2e/posture.test.ts",
  "test/e2e/rotation.test.ts",
  "test/e2e/credential.test.ts",
  "test/e2e/faults.test.ts",
  "test/e2e/faults-keystone-stop.test.ts",
  "test/e2e/operator-self.test.ts",
];

/**
 * Integration and end-to-end tests share one Keystone: files run one at a time, integration
 * (group 1) wholly before e2e (group 2), never both at once. Unit tests need no Keystone; scripts/test.sh
 * runs them first, on their own, so that a failure shows before the slow set-up of the rest.
 */
export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"], testTimeout: 10_000 } },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          testTimeout: 600_000,
          hookTimeout: 600_000,
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
      {
        test: {
          name: "compat",
          include: COMPAT,
          testTimeout: 600_000,
          hookTimeout: 600_000,
          fileParallelism: false,
          sequence: { groupOrder: 3 },
        },
      },
    ],
  },
});
