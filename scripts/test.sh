#!/usr/bin/env bash
# The README's test command (`npm test`). On a fresh machine it installs and starts all the
# tests need: npm packages (with a supported Node.js), Debian's Keystone and PostgreSQL on
# loopback, the Pulumi CLI built from its Go modules and, when ../shared can build it, its Node.js
# language host (for plain `pulumi up`), and builds the package (dist/). Then it runs every test (unit,
# integration against the real Keystone, end-to-end through the real Pulumi CLI) and finally
# scans the whole test output and logs for any secret the tests handled.
#
# Usage: npm test [-- VITEST_ARGS...]      e.g. npm test -- --project unit
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test] %s\n' "$*" >&2; }

if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
fi
export PATH="$PWD/node_modules/.bin:$PATH"

# The package others install (dist/): test/e2e/consumer.test.ts packs and installs it. A broken
# build fails here, before any test runs.
log "building the package (npm run build)"
npm run --silent build

log "starting a local Keystone (scripts/keystone.sh)"
bash scripts/keystone.sh install
bash scripts/keystone.sh start

# What the operator-facing tests drive: a real terminal (tmux) and a real browser (Chromium).
TEST_PACKAGES=(tmux chromium fonts-dejavu-core)
missing=()
for pkg in "${TEST_PACKAGES[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  log "installing test tools: ${missing[*]}"
  apt-get -q -o DPkg::Lock::Timeout=600 update </dev/null >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 install -y --no-install-recommends \
    "${missing[@]}" </dev/null >/dev/null
fi

log "making the Pulumi CLI available (scripts/get-pulumi.sh)"
PULUMI_BIN_DIR="$(bash scripts/get-pulumi.sh --print-bin-dir)"
export PULUMI_BIN_DIR
export PATH="$PULUMI_BIN_DIR:$PATH"
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
# get-pulumi.sh put the Node language host beside the CLI when ../shared can build it;
# test/e2e/plain-cli.test.ts runs plain `pulumi up` with it, and skips (never in CI) without.
if [ -x "$PULUMI_BIN_DIR/pulumi-language-nodejs" ]; then
  log "plain pulumi CLI tests: language host $PULUMI_BIN_DIR/pulumi-language-nodejs"
else
  log "plain pulumi CLI tests will be skipped: no pulumi-language-nodejs beside the CLI (see README, Development)"
fi

mkdir -p .local/logs
chmod 700 .local
rm -f .local/test-secrets.txt .local/logs/*.log
set +e
vitest run --reporter=default --reporter=json --outputFile.json=.local/logs/vitest.json "$@" 2>&1 |
  tee .local/logs/test-output.log
status=${PIPESTATUS[0]}
set -e

log "scanning test output and logs for secrets"
node scripts/scan-secrets.ts .local/test-secrets.txt .local/logs || status=1
node scripts/test-summary.ts .local/logs/vitest.json || status=1
exit "$status"
