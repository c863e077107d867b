# Sourced by the scripts that run Pulumi: puts the project's Node.js (>= 22, from the npm
# package `node`) and the Pulumi CLI (scripts/get-pulumi.sh) first on PATH, and sets the
# embedded defaults unless the operator set their own: a local file state backend in
# .local/state and a random passphrase kept in .local/pulumi-passphrase (mode 0600).
# shellcheck shell=bash

KT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -x "$KT_ROOT/node_modules/.bin/node" ]; then
  echo "[keystone-totp] installing npm packages (npm ci)" >&2
  (cd "$KT_ROOT" && npm ci --no-audit --no-fund >&2)
fi
export PATH="$KT_ROOT/node_modules/.bin:$PATH"

PULUMI_BIN_DIR="$(bash "$KT_ROOT/scripts/get-pulumi.sh" --print-bin-dir)"
export PULUMI_BIN_DIR
export PATH="$PULUMI_BIN_DIR:$PATH"
export PULUMI_SKIP_UPDATE_CHECK="${PULUMI_SKIP_UPDATE_CHECK:-true}"
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="${PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION:-true}"

mkdir -p "$KT_ROOT/.local"
chmod 700 "$KT_ROOT/.local"
# Node.js's on-disk cache of compiled modules (NODE_COMPILE_CACHE, Node 22.1 and later): each
# command, and each provider process the engine starts, compiles the Pulumi SDK, gRPC and
# protobuf again without it. With it, a forced no-op of 20 stacks took 17 % less time and the
# provider processes 44 % less CPU (bench/README.md). It holds compiled module code, no data;
# Node checks each entry against its source. NODE_COMPILE_CACHE=DIR puts it elsewhere,
# NODE_DISABLE_COMPILE_CACHE=1 turns it off.
if [ -z "${NODE_COMPILE_CACHE:-}" ]; then
  mkdir -p "$KT_ROOT/.local/cache/node-compile"
  export NODE_COMPILE_CACHE="$KT_ROOT/.local/cache/node-compile"
fi
if [ -z "${PULUMI_BACKEND_URL:-}" ] && ! pulumi whoami >/dev/null 2>&1; then
  mkdir -p "$KT_ROOT/.local/state"
  export PULUMI_BACKEND_URL="file://$KT_ROOT/.local/state"
fi
# Pulumi's PostgreSQL backend lists stacks one at a time, or `pulumi stack ls` can wait forever
# (operator/backend/bucket.ts, serialisePostgresListing; docs/shared-backend.md).
case "${PULUMI_BACKEND_URL:-}" in
  postgres://* | postgresql://*) export PULUMI_DIY_BACKEND_PARALLEL="${PULUMI_DIY_BACKEND_PARALLEL:-1}" ;;
esac
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  if [ ! -s "$KT_ROOT/.local/pulumi-passphrase" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KT_ROOT/.local/pulumi-passphrase")
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE="$KT_ROOT/.local/pulumi-passphrase"
fi
