/** The TotpCredential provider object (see provider.cjs for why it lives here). */
"use strict";
module.exports = require("./provider.cjs").makeProvider("credential", { check: true });
