/**
 * Defaults and limits that the users CSV, the resources and the operator commands share. They
 * live here, at the bottom of the layers, so that nothing below `providers/` has to import it;
 * `providers/credential/types.ts` re-exports them for the package.
 */

/** Default Keystone domain for users given by name (Keystone's own default domain). */
export const DEFAULT_DOMAIN = "Default";

/** Largest `rotationDays`, in days (ten years; a larger value is surely a typo). */
export const MAX_ROTATION_DAYS = 3650;
