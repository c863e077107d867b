/** The TotpDelivery provider object (see provider.cjs for why it lives here). */
"use strict";
module.exports = require("./provider.cjs").makeProvider("keystone-totp/delivery-handlers", {
  check: true,
  read: "props",
  deleteNoop: true,
});
