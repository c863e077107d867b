#!/usr/bin/env bash
# `npm run demo`: the main job on embedded defaults. With neither OS_AUTH_URL nor OS_CLOUD
# set it starts a local real Keystone (scripts/keystone.sh) and creates the example users in
# it; state goes to a local file backend, and mail to the outbox folder. Then it enrolls every
# user of examples/users.csv with `pulumi up` on the `dev` stack and prints a summary.
#
# Environment: KEYSTONE_TOTP_STACK (default dev).
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
cd "$KT_ROOT"
STACK="${KEYSTONE_TOTP_STACK:-dev}"

if [ -z "${OS_AUTH_URL:-}" ] && [ -z "${OS_CLOUD:-}" ]; then
  echo "[demo] no OS_AUTH_URL or OS_CLOUD: starting a local Keystone" >&2
  bash scripts/keystone.sh install
  bash scripts/keystone.sh start
  # shellcheck disable=SC1090
  source "$(bash scripts/keystone.sh env)"
  node scripts/demo-users.ts examples/users.csv .local/demo-passwords.json
fi

# A stack created in another backend, or with another passphrase, leaves its salt in the stack
# file; a new stack must not inherit it ("incorrect passphrase").
if ! pulumi stack ls --json 2>/dev/null | grep -q "\"name\": \"$STACK\""; then
  sed -i '/^encryptionsalt:/d' "Pulumi.$STACK.yaml" 2>/dev/null || true
fi
echo "[demo] provisioning stack $STACK (state: ${PULUMI_BACKEND_URL:-pulumi login})" >&2
node scripts/provision.ts up --stack "$STACK" --yes --continue-on-error
node scripts/demo-summary.ts "$STACK"
