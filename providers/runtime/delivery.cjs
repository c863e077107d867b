/** The TotpDelivery provider object (see provider.cjs for why it lives here). */
"use strict";
module.exports = require("./provider.cjs").makeProvider("delivery", {
  check: true,
  read: "props",
  deleteNoop: true,
});
