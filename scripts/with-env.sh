#!/usr/bin/env bash
# Runs a command with the project's environment (scripts/env.sh): the project's Node.js and
# the Pulumi CLI first on PATH, and the embedded defaults for state and passphrase.
# Used by `npm run pulumi -- ...` and `npm run provision -- ...`.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
cd "$KT_ROOT"
exec "$@"
