#!/usr/bin/env bash
# The README's test command (`npm test`). On a fresh machine it installs and starts all the
# tests need: npm packages (with a supported Node.js), Debian's Keystone and PostgreSQL on
# loopback, the Pulumi CLI built from its Go modules and, when ../shared can build it, its Node.js
# language host (for plain `pulumi up`), and builds the package (dist/). Then it runs, in order:
#
#   1. unit         no Keystone; a failure here stops the run at once (nothing slow started)
#   2. keystone-22  integration and end-to-end tests against Debian 12's Keystone 22 (the
#                   instance "default"): the whole suite; files run one at a time (vitest
#                   fileParallelism false), integration before e2e, never both at once
#   3. keystone-27, keystone-30
#                   the compatibility suite (vitest project "compat", listed in
#                   vitest.config.ts: the doctor, the operator's own account, a credential
#                   through the engine with a lost answer, rotation and refresh; on 30 also
#                   onboarding, rerun, posture, enforcement, crash leftovers and resends)
#                   against trixie's Keystone 27 and sid's Keystone 30, each in a chroot built
#                   from Debian's packages (built once per machine, in the background; see
#                   docs/releases.md). They run BESIDE phase 2, one release after the other,
#                   each on instances of its own: phase 2 keeps one of the two cores busy about
#                   60 % of its time, and the two lanes share nothing but PostgreSQL (each
#                   Keystone has its own database, each test stack its own backend folder; the
#                   instances a test file starts are named per release). Their output is kept
#                   in .local/logs/compat-lane.out and printed after phase 2's.
#
# and finally scans the whole test output and logs for any secret the tests handled, and
# prints per phase what passed and its time, then the totals as one line.
#
# Usage: npm test                          everything above
#        npm test -- VITEST_ARGS...        only those tests (e.g. a file), on Keystone 22
# Environment:
#   KEYSTONE_TOTP_RELEASES   releases for the compatibility suite (default "27 30"; "" for none)
#   KEYSTONE_TOTP_PASSWORD_HASH_ROUNDS
#                            bcrypt rounds of the test Keystones' passwords (default 4; "" for
#                            Keystone's own 12)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test] %s\n' "$*" >&2; }
T_START=$SECONDS

if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
fi
export PATH="$PWD/node_modules/.bin:$PATH"
# The Keystones started here and by the tests store passwords with 4 bcrypt rounds instead of
# Keystone's 12 (scripts/keystone.sh): the tests create hundreds of users and log in thousands
# of times on 2 cores; how Keystone hashes passwords is not what they test.
export KEYSTONE_TOTP_PASSWORD_HASH_ROUNDS=${KEYSTONE_TOTP_PASSWORD_HASH_ROUNDS-4}

mkdir -p .local/logs
chmod 700 .local
# The tests start thousands of Node.js processes (commands, provider processes): compiled
# modules are cached on disk, as scripts/env.sh does for operators.
if [ -z "${NODE_COMPILE_CACHE:-}" ]; then
  mkdir -p .local/cache/node-compile
  export NODE_COMPILE_CACHE="$PWD/.local/cache/node-compile"
fi
rm -f .local/test-secrets.txt .local/logs/*.log .local/logs/*.json .local/logs/phases.tsv .local/logs/summary.txt .local/logs/*.out

# Only those tests when arguments are given (a developer's focused run); the whole matrix else.
if (($# > 0)); then RELEASES=${KEYSTONE_TOTP_RELEASES-}; else RELEASES=${KEYSTONE_TOTP_RELEASES-27 30}; fi

# The chroots of the other releases take minutes to build the first time on a machine: built in
# the background now, while the rest is set up and the Keystone 22 suite runs.
declare -A PREPARE_PID=()
prepare_all() {
  local r
  for r in $RELEASES; do
    bash scripts/keystone.sh prepare --release "$r" >".local/logs/prepare-$r.out" 2>&1 || return 1
  done
}
# Debian's Keystone, PostgreSQL and the test tools keystone.sh needs: installed once, here, before
# the chroots are built in the background (their build installs debootstrap itself, waiting for apt).
bash scripts/keystone.sh install
if [ -n "$RELEASES" ]; then
  log "building the Keystone chroots for releases $RELEASES in the background (.local/logs/prepare-*.out)"
  prepare_all &
  PREPARE_PID[all]=$!
fi

# The package others install (dist/): test/e2e/consumer.test.ts packs and installs it. A broken
# build fails here, before any test runs.
log "building the package (npm run build)"
npm run --silent build

log "starting a local Keystone 22 (scripts/keystone.sh)"
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
  log "plain pulumi CLI tests will be skipped: no pulumi-language-nodejs beside the CLI (see docs/development.md, Tests)"
fi
log "set-up took $((SECONDS - T_START)) s"

status=0
unit_ok=1
# Runs one phase: vitest with the given arguments, its report in .local/logs/LABEL.json, its
# time in phases.tsv (read by scripts/test-summary.ts).
phase() {
  local label=$1
  shift
  local t0=$SECONDS rc
  log "phase $label: vitest run $*"
  set +e
  vitest run --reporter=default --reporter=json --outputFile.json=".local/logs/$label.json" "$@" 2>&1 |
    tee -a ".local/logs/${OUTPUT_LOG:-test-output.log}"
  rc=${PIPESTATUS[0]}
  set -e
  printf '%s\t%s\t%s\n' "$label" "$((SECONDS - t0))" "$rc" >>.local/logs/phases.tsv
  log "phase $label: exit $rc in $((SECONDS - t0)) s"
  return "$rc"
}

# The compatibility lane: each release's chroot (waiting for the background build: `prepare`
# takes the chroot's lock, and returns at once when it is built), its Keystone, its suite.
# A failure on one release does not hide what the next one does.
compat_lane() {
  local r rc=0
  export OUTPUT_LOG=test-output-compat.log
  for r in $RELEASES; do
    if ! bash scripts/keystone.sh prepare --release "$r" >>".local/logs/prepare-$r.out" 2>&1; then
      log "building the Keystone $r chroot failed: see .local/logs/prepare-$r.out"
      cat ".local/logs/prepare-$r.out" >&2 || true
      rc=1
      continue
    fi
    bash scripts/keystone.sh start --name "r$r" --release "$r" || { rc=1; continue; }
    KEYSTONE_TOTP_TEST_INSTANCE="r$r" KEYSTONE_TOTP_COMPAT_RELEASE="$r" phase "keystone-$r" --project compat || rc=1
    bash scripts/keystone.sh stop --name "r$r" || rc=1
  done
  return "$rc"
}

if (($# > 0)); then
  # A file matches its own project and, when in the compatibility suite, "compat" too: run it once.
  if [[ " $* " == *" --project"* ]]; then phase selected "$@" || status=1
  else phase selected --project unit --project integration --project e2e "$@" || status=1; fi
  # A developer's focused run asks for releases explicitly (KEYSTONE_TOTP_RELEASES): after it.
  if [ -n "$RELEASES" ]; then compat_lane || status=1; fi
else
  # Unit tests first: a failure there shows in seconds, and stops the run before the slow part.
  if ! phase unit --project unit; then
    status=1
    unit_ok=0
    log "unit tests failed: the Keystone suites are not run"
    if [ -n "$RELEASES" ]; then
      log "the compatibility suites (releases $RELEASES) are not run: the unit tests failed"
      kill "${PREPARE_PID[all]}" 2>/dev/null || true
    fi
  else
    compat_pid=""
    if [ -n "$RELEASES" ]; then
      log "compatibility lane (releases $RELEASES) beside phase keystone-22: output in .local/logs/compat-lane.out"
      compat_lane >.local/logs/compat-lane.out 2>&1 &
      compat_pid=$!
    fi
    phase keystone-22 --project integration --project e2e || status=1
    if [ -n "$compat_pid" ]; then
      log "waiting for the compatibility lane"
      wait "$compat_pid" || status=1
      cat .local/logs/compat-lane.out
    fi
  fi
fi
# The background build's own outcome: a failed build already failed the lane that needed it.
if [ -n "$RELEASES" ] && ((unit_ok == 1)) && (($# == 0)); then wait "${PREPARE_PID[all]}" || true; fi

log "scanning test output and logs for secrets"
node scripts/scan-secrets.ts .local/test-secrets.txt .local/logs || status=1
log "tests took $((SECONDS - T_START)) s in all"
node scripts/test-summary.ts .local/logs/phases.tsv || status=1
exit "$status"
