#!/usr/bin/env bash
# `npm run pulumi -- ARGS`: the Pulumi CLI with this project's Node.js and embedded defaults
# (see scripts/env.sh), e.g. `npm run pulumi -- preview --stack prod`.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
cd "$KT_ROOT"
exec pulumi "$@"
