#!/usr/bin/env bash
# keystone.sh - run real OpenStack Keystone instances (Debian's `keystone`
# package) on loopback, for the keystone-totp tests and for local development.
#
# Usage:
#   scripts/keystone.sh install
#       apt-get install what is needed (keystone, PostgreSQL, uWSGI, oathtool,
#       zbar-tools). Fast no-op when everything is already installed.
#   scripts/keystone.sh start [--name NAME] [--port PORT] [--methods LIST]
#                             [--token-expiration SECONDS] [--list-limit N]
#                             [--cache none|memcached]
#       Start instance NAME (default "default") on http://127.0.0.1:PORT/v3 and
#       wait until GET /v3 answers 200. The first start of an instance creates
#       its PostgreSQL role and database and bootstraps Keystone (about 20 s);
#       later starts keep its data and take about 10 s. Options not given keep
#       the instance's previous values; a new instance gets port
#       $KEYSTONE_PORT or 5000 ($KEYSTONE_PORT, when set, also overrides the
#       previous port). When no port was given (or `--port auto`) and the
#       previous or default port is taken (a devstack, another checkout's
#       Keystone), the instance takes the first free port from
#       ${KEYSTONE_DEFAULT_PORT:-5000} up and rewrites openrc and instance.json
#       with it; a port given explicitly and taken is an error. Methods
#       external,password,token,oauth1,totp,application_credential and
#       Keystone's default token expiration (3600 s) and no list limit.
#       Methods without "totp" give a "TOTP not enabled" Keystone. --list-limit
#       N writes `[DEFAULT] list_limit = N` (lists longer than N come back cut
#       short with "truncated": true, as on many production clouds); 0 removes
#       the limit. --cache memcached gives the instance a memcached of its own
#       (on a unix socket in its folder) and turns Keystone's cache on with
#       oslo.cache's memcache_pool backend, as production deployments run it
#       (tokens, users, roles and the catalog are then cached); it installs
#       Debian's memcached and python3-memcache when missing. none (the default)
#       is Keystone's default: no cache. Starting a running instance with the
#       same settings does nothing.
#   scripts/keystone.sh stop [--name NAME | --all]
#   scripts/keystone.sh destroy [--name NAME]   stop, drop its database, remove its files
#   scripts/keystone.sh status                  list instances and whether they answer
#   scripts/keystone.sh env [--name NAME]       print the path of the instance's openrc:
#       source "$(scripts/keystone.sh env)"
#   scripts/keystone.sh stop-postgres           stop the PostgreSQL cluster
#
# Files of an instance, in ${KEYSTONE_TOTP_STATE:-<repo>/.local}/keystone/NAME
# (directories 0700, files 0600):
#   openrc          exports OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, ... (admin)
#   instance.json   {"authUrl","username","password","projectName",
#                    "userDomainName","projectDomainName","port","name",
#                    "methods","totpEnabled","tokenExpiration","listLimit","cache"}
#   admin-password, keystone.conf, settings (port, methods, ..., DB password),
#   port (the port it uses or is about to use, so that no other instance takes it),
#   uwsgi.pid, log/ (uwsgi.log, setup.log, Keystone's own logs),
#   memcached.pid and memcached.sock (with --cache memcached),
#   fernet-keys/, fernet-receipts/, credential-keys/, .bootstrapped, .lock
#
# Must run as root (it manages packages, PostgreSQL and its roles). Passwords
# are never printed.

set -euo pipefail
umask 077

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO
readonly STATE_ROOT="${KEYSTONE_TOTP_STATE:-$REPO/.local}/keystone"
# Databases and roles are named for the instance AND its state folder, so that two checkouts
# on one machine (each with its own .local) never share or drop each other's database.
DB_SUFFIX="$(printf '%s' "$STATE_ROOT" | sha256sum | cut -c1-8)"
readonly DB_SUFFIX
readonly DEFAULT_METHODS="external,password,token,oauth1,totp,application_credential"
readonly DEFAULT_TOKEN_EXPIRATION=3600
# Entries per list answer; 0 means Keystone's default, no limit.
readonly DEFAULT_LIST_LIMIT=0
# Keystone's own default: no cache. "memcached" is what production deployments run.
readonly DEFAULT_CACHE=none
# Memory of an instance's memcached, MiB (the tokens and users of a 10,000-user bench fit many times).
readonly MEMCACHED_MB=128
readonly CACHE_PACKAGES=(memcached python3-memcache)
# Port a new instance asks for (Keystone's usual public port), and how many ports from it up
# are tried when it is taken and no port was given.
readonly DEFAULT_PORT=${KEYSTONE_DEFAULT_PORT:-5000}
readonly AUTO_PORT_SPAN=100
readonly READY_TIMEOUT=${KEYSTONE_READY_TIMEOUT:-60}
readonly KEYSTONE_WSGI=/usr/bin/keystone-wsgi-public
readonly PACKAGES=(keystone postgresql python3-psycopg2 uwsgi-core uwsgi-plugin-python3
                   oathtool zbar-tools openssl git)

export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

log() { printf 'keystone.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit "${1:-2}"
}

require_root() {
  [[ $EUID -eq 0 ]] || die "must run as root"
}

# A random alphanumeric string of length $1 (default 32).
random_alnum() {
  local len=${1:-32} s=""
  while ((${#s} < len)); do
    s+=$(head -c 512 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
  done
  printf '%s' "${s:0:len}"
}

# ---------------------------------------------------------------- packages --

# Installs those of the Debian packages given (default: PACKAGES) that are not installed yet.
cmd_install() {
  require_root
  local -a wanted=("$@")
  ((${#wanted[@]})) || wanted=("${PACKAGES[@]}")
  local missing=() pkg status
  local -A installed=()
  while read -r pkg status; do
    [[ $status == installed ]] && installed[$pkg]=1
  done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${wanted[@]}" 2>/dev/null || true)
  for pkg in "${wanted[@]}"; do
    [[ -n ${installed[$pkg]:-} ]] || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    log "packages already installed"
    return
  fi
  log "installing: ${missing[*]}"
  local apt_opts=(-q -o DPkg::Lock::Timeout=600) try
  for try in 1 2 3; do    # another apt-get update may hold the lists lock
    apt-get "${apt_opts[@]}" update </dev/null >/dev/null && break
    ((try < 3)) || die "apt-get update failed"
    sleep 10
  done
  apt-get "${apt_opts[@]}" install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" </dev/null
}

require_packages() {
  if [[ ! -x $KEYSTONE_WSGI ]] || ! command -v uwsgi >/dev/null ||
     ! command -v pg_ctlcluster >/dev/null; then
    die "Keystone is not installed: run '$0 install' first"
  fi
}

# -------------------------------------------------------------- postgresql --

PG_VERSION="" PG_CLUSTER="" PG_PORT=""

# Finds (or creates) the PostgreSQL cluster and starts it if it is down.
pg_ensure_running() {
  local line
  line=$(pg_lsclusters --no-header 2>/dev/null | head -n1 || true)
  if [[ -z $line ]]; then
    local version
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
    [[ -n $version ]] || die "no PostgreSQL server installed"
    log "creating PostgreSQL cluster $version/main"
    pg_createcluster "$version" main >/dev/null </dev/null
    line=$(pg_lsclusters --no-header | head -n1)
  fi
  read -r PG_VERSION PG_CLUSTER PG_PORT _ <<<"$line"
  if [[ $(pg_lsclusters --no-header "$PG_VERSION" "$PG_CLUSTER" | awk '{print $4}') != online ]]; then
    log "starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
    # Close the lock fds: the server must not inherit them.
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start \
      </dev/null 8>&- 9>&-
  fi
}

# Runs SQL from stdin as the postgres superuser (stdin keeps secrets out of argv).
psql_admin() {
  (cd / && PGOPTIONS='-c client_min_messages=warning' \
    runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres)
}

# ---------------------------------------------------------------- instances --

NAME="default" PORT="" METHODS="" TOKEN_EXPIRATION="" LIST_LIMIT="" CACHE="" ALL=0

parse_opts() {
  while (($#)); do
    case $1 in
      --name) NAME=${2:?--name needs a value}; shift 2 ;;
      --name=*) NAME=${1#*=}; shift ;;
      --port) PORT=${2:?--port needs a value}; shift 2 ;;
      --port=*) PORT=${1#*=}; shift ;;
      --methods) METHODS=${2:?--methods needs a value}; shift 2 ;;
      --methods=*) METHODS=${1#*=}; shift ;;
      --token-expiration) TOKEN_EXPIRATION=${2:?--token-expiration needs a value}; shift 2 ;;
      --token-expiration=*) TOKEN_EXPIRATION=${1#*=}; shift ;;
      --list-limit) LIST_LIMIT=${2:?--list-limit needs a value}; shift 2 ;;
      --list-limit=*) LIST_LIMIT=${1#*=}; shift ;;
      --cache) CACHE=${2:?--cache needs a value}; shift 2 ;;
      --cache=*) CACHE=${1#*=}; shift ;;
      --all) ALL=1; shift ;;
      -h|--help) usage 0 ;;
      *) die "unknown option: $1" ;;
    esac
  done
  [[ $NAME =~ ^[a-z0-9][a-z0-9_]{0,39}$ ]] \
    || die "bad --name '$NAME' (lower-case letters, digits, _; at most 40)"
  [[ $PORT == auto ]] && PORT=""
  [[ -z $PORT || ($PORT =~ ^[0-9]+$ && PORT -ge 1 && PORT -le 65535) ]] || die "bad --port '$PORT'"
  [[ -z $METHODS || $METHODS =~ ^[a-z0-9_]+(,[a-z0-9_]+)*$ ]] || die "bad --methods '$METHODS'"
  [[ -z $TOKEN_EXPIRATION || $TOKEN_EXPIRATION =~ ^[1-9][0-9]*$ ]] \
    || die "bad --token-expiration '$TOKEN_EXPIRATION'"
  [[ -z $LIST_LIMIT || $LIST_LIMIT =~ ^(0|[1-9][0-9]{0,5})$ ]] \
    || die "bad --list-limit '$LIST_LIMIT' (0 for none, else 1..999999)"
  [[ -z $CACHE || $CACHE == none || $CACHE == memcached ]] || die "bad --cache '$CACHE' (none or memcached)"
}

instance_dir() { printf '%s/%s' "$STATE_ROOT" "$1"; }

# Reads key=value lines of the instance's settings file into SETTING_<key>.
read_settings() {
  local file="$1/settings" key value
  SETTING_PORT="" SETTING_METHODS="" SETTING_TOKEN_EXPIRATION="" SETTING_LIST_LIMIT=""
  SETTING_CACHE="" SETTING_DB_PASSWORD=""
  [[ -f $file ]] || return 0
  while IFS='=' read -r key value; do
    case $key in
      PORT|METHODS|TOKEN_EXPIRATION|LIST_LIMIT|CACHE|DB_PASSWORD) printf -v "SETTING_$key" '%s' "$value" ;;
    esac
  done <"$file"
}

# Reads a file that only we write; empty if it does not exist.
read_secret() { if [[ -f $1 ]]; then cat "$1"; fi; }

pid_alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

instance_pid() {
  local pid
  pid=$(read_secret "$1/uwsgi.pid")
  pid=${pid//[!0-9]/}
  if pid_alive "$pid"; then printf '%s' "$pid"; fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints the first port from DEFAULT_PORT up that nothing listens on and that no other instance
# of this state folder uses or has claimed (one being set up does not listen yet, and a stopped
# one keeps its port for its next start). Fails when none of AUTO_PORT_SPAN ports is free.
free_port() {
  local self=$1 other port claimed=" "
  for other in "$STATE_ROOT"/*/; do
    other=${other%/}
    [[ $other == "$self" ]] && continue
    claimed+="$(read_secret "$other/port") $(sed -n 's/^PORT=//p' "$other/settings" 2>/dev/null) "
  done
  for ((port = DEFAULT_PORT; port < DEFAULT_PORT + AUTO_PORT_SPAN && port <= 65535; port++)); do
    [[ $claimed == *" $port "* ]] && continue
    port_in_use "$port" || { printf '%s' "$port"; return 0; }
  done
  return 1
}

http_status() {
  if command -v curl >/dev/null; then
    curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null || true
  else
    /usr/bin/python3 - "$1" <<'PY' 2>/dev/null || true
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status, end="")
except urllib.error.HTTPError as e:
    print(e.code, end="")
PY
  fi
}

write_config() {
  local dir=$1 db_user=$2 db_password=$3 db_name=$4
  cat >"$dir/keystone.conf" <<EOF
# Written by scripts/keystone.sh for instance "$NAME"; rewritten on every start.
[DEFAULT]
log_dir = $dir/log
use_stderr = false
$( ((LIST_LIMIT > 0)) && printf 'list_limit = %s\n' "$LIST_LIMIT")

[database]
connection = postgresql://$db_user:$db_password@127.0.0.1:$PG_PORT/$db_name

[auth]
methods = $METHODS

[token]
provider = fernet
expiration = $TOKEN_EXPIRATION

[fernet_tokens]
key_repository = $dir/fernet-keys

[fernet_receipts]
key_repository = $dir/fernet-receipts

[credential]
key_repository = $dir/credential-keys

[totp]
included_previous_windows = 1

[security_compliance]
EOF
  if [[ $CACHE == memcached ]]; then
    cat >>"$dir/keystone.conf" <<EOF

[cache]
enabled = true
backend = oslo_cache.memcache_pool
memcache_servers = unix:$dir/memcached.sock
EOF
  fi
  cat >"$dir/settings" <<EOF
PORT=$PORT
METHODS=$METHODS
TOKEN_EXPIRATION=$TOKEN_EXPIRATION
LIST_LIMIT=$LIST_LIMIT
CACHE=$CACHE
DB_PASSWORD=$db_password
EOF
}

write_client_files() {
  local dir=$1 password=$2 auth_url="http://127.0.0.1:$PORT/v3" totp=false methods_json
  local -a methods
  IFS=, read -r -a methods <<<"$METHODS"
  [[ ,$METHODS, == *,totp,* ]] && totp=true
  methods_json=$(printf '"%s",' "${methods[@]}")
  cat >"$dir/openrc" <<EOF
# Keystone instance "$NAME" (scripts/keystone.sh)
export OS_AUTH_URL=$auth_url
export OS_USERNAME=admin
export OS_PASSWORD=$password
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_IDENTITY_API_VERSION=3
export OS_REGION_NAME=RegionOne
EOF
  cat >"$dir/instance.json" <<EOF
{
  "name": "$NAME",
  "authUrl": "$auth_url",
  "username": "admin",
  "password": "$password",
  "projectName": "admin",
  "userDomainName": "Default",
  "projectDomainName": "Default",
  "port": $PORT,
  "methods": [${methods_json%,}],
  "totpEnabled": $totp,
  "tokenExpiration": $TOKEN_EXPIRATION,
  "listLimit": $LIST_LIMIT,
  "cache": "$CACHE"
}
EOF
}

# keystone-manage with output to the setup log (it prints a harmless eventlet
# traceback at exit). It inherits the instance lock on purpose: if this script
# is killed, a new start waits for the orphaned keystone-manage to finish.
keystone_manage() {
  local dir=$1; shift
  if ! keystone-manage --config-file "$dir/keystone.conf" "$@" \
      >>"$dir/log/setup.log" 2>&1 </dev/null; then
    log "keystone-manage $1 failed; tail of $dir/log/setup.log:"
    tail -n 30 "$dir/log/setup.log" >&2
    exit 1
  fi
}

bootstrap() {
  local dir=$1 password=$2 url="http://127.0.0.1:$PORT/v3"
  OS_BOOTSTRAP_PASSWORD=$password keystone_manage "$dir" bootstrap \
    --bootstrap-username admin --bootstrap-project-name admin --bootstrap-role-name admin \
    --bootstrap-admin-url "$url" --bootstrap-internal-url "$url" --bootstrap-public-url "$url" \
    --bootstrap-region-id RegionOne
}

uwsgi_python_plugin() {
  local f
  [[ -e /usr/lib/uwsgi/plugins/python3_plugin.so ]] && { echo python3; return; }
  for f in /usr/lib/uwsgi/plugins/python3*_plugin.so; do
    [[ -e $f ]] && { f=${f##*/}; echo "${f%_plugin.so}"; return; }
  done
  die "no uWSGI python3 plugin in /usr/lib/uwsgi/plugins (install uwsgi-plugin-python3)"
}

# The instance's own memcached, on a unix socket in its folder (no port to share or collide on;
# mode 0600, so only root's Keystone reaches it). Replaces one left from an earlier start.
start_memcached() {
  local dir=$1 i
  command -v memcached >/dev/null && /usr/bin/python3 -c 'import memcache' 2>/dev/null \
    || cmd_install "${CACHE_PACKAGES[@]}"
  stop_memcached "$dir"
  memcached -d -u root -s "$dir/memcached.sock" -a 0600 -m "$MEMCACHED_MB" -c 4096 \
    -P "$dir/memcached.pid" </dev/null 8>&- 9>&- || die "memcached did not start"
  for ((i = 0; i < 50; i++)); do
    [[ -S $dir/memcached.sock ]] && return 0
    sleep 0.1
  done
  die "memcached did not open $dir/memcached.sock"
}

# The pid of the instance's memcached if it runs (checked by name: a stale pid file may name
# another process); empty otherwise.
memcached_pid() {
  local pid
  pid=$(read_secret "$1/memcached.pid")
  pid=${pid//[!0-9]/}
  if pid_alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == memcached ]]; then printf '%s' "$pid"; fi
}

# Stops the instance's memcached, if it runs.
stop_memcached() {
  local dir=$1 pid i
  pid=$(memcached_pid "$dir")
  if [[ -n $pid ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do pid_alive "$pid" || break; sleep 0.1; done
    if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$dir/memcached.pid" "$dir/memcached.sock"
}

cmd_start() {
  require_root
  require_packages
  local dir; dir=$(instance_dir "$NAME")
  mkdir -p "$STATE_ROOT"
  chmod 0700 "$STATE_ROOT"

  # fd 8: PostgreSQL and roles (all instances); fd 9: this instance.
  exec 8>"$STATE_ROOT/.lock"
  flock 8
  mkdir -p "$dir"
  chmod 0700 "$dir"
  exec 9>"$dir/.lock"
  flock 9

  read_settings "$dir"
  [[ $DEFAULT_PORT =~ ^[0-9]+$ && DEFAULT_PORT -ge 1 && DEFAULT_PORT -le 65535 ]] \
    || die "bad KEYSTONE_DEFAULT_PORT '$DEFAULT_PORT'"
  [[ ${KEYSTONE_PORT:-} == auto ]] && KEYSTONE_PORT=""
  # Given explicitly, a taken port is an error; otherwise another free one is taken below.
  local explicit_port=${PORT:-${KEYSTONE_PORT:-}}
  PORT=${explicit_port:-${SETTING_PORT:-$DEFAULT_PORT}}
  METHODS=${METHODS:-${SETTING_METHODS:-$DEFAULT_METHODS}}
  TOKEN_EXPIRATION=${TOKEN_EXPIRATION:-${SETTING_TOKEN_EXPIRATION:-$DEFAULT_TOKEN_EXPIRATION}}
  LIST_LIMIT=${LIST_LIMIT:-${SETTING_LIST_LIMIT:-$DEFAULT_LIST_LIMIT}}
  CACHE=${CACHE:-${SETTING_CACHE:-$DEFAULT_CACHE}}
  [[ $PORT =~ ^[0-9]+$ && PORT -ge 1 && PORT -le 65535 ]] || die "bad port '$PORT'"
  local url="http://127.0.0.1:$PORT/v3"

  local pid; pid=$(instance_pid "$dir")
  if [[ -n $pid ]]; then
    if [[ $PORT == "${SETTING_PORT}" && $METHODS == "${SETTING_METHODS}" &&
          $TOKEN_EXPIRATION == "${SETTING_TOKEN_EXPIRATION}" &&
          $LIST_LIMIT == "${SETTING_LIST_LIMIT:-$DEFAULT_LIST_LIMIT}" &&
          $CACHE == "${SETTING_CACHE:-$DEFAULT_CACHE}" &&
          ($CACHE != memcached || -n $(memcached_pid "$dir")) && $(http_status "$url") == 200 ]]; then
      log "instance $NAME already running at $url (pid $pid)"
      return
    fi
    log "instance $NAME is running with other settings or not answering: restarting it"
    stop_instance "$dir"
  fi
  if port_in_use "$PORT"; then
    [[ -z $explicit_port ]] || die "port $PORT is already in use (by something else than instance $NAME);" \
      "give another --port, or none (or --port auto) to take a free one"
    local taken=$PORT
    PORT=$(free_port "$dir") \
      || die "ports $DEFAULT_PORT to $((DEFAULT_PORT + AUTO_PORT_SPAN - 1)) are all in use; give a free --port"
    url="http://127.0.0.1:$PORT/v3"
    log "port $taken is in use: instance $NAME takes port $PORT (openrc and instance.json carry it)"
  fi
  # Claimed while the instances lock is held, so that another instance started meanwhile from
  # this state folder does not pick the same port before this one listens.
  printf '%s' "$PORT" >"$dir/port"

  pg_ensure_running
  flock -u 8    # PostgreSQL is up; roles and databases below are per instance

  local db="keystone_${NAME}_$DB_SUFFIX" db_password password fresh=0
  [[ -f $dir/.bootstrapped ]] || fresh=1
  db_password=${SETTING_DB_PASSWORD:-$(random_alnum 32)}
  password=$(read_secret "$dir/admin-password")
  if ((fresh)); then
    local t0=$SECONDS
    log "setting up instance $NAME (first start)"
    [[ -n $password ]] || password=$(random_alnum 32)
    printf '%s' "$password" >"$dir/admin-password"
    rm -rf "$dir/fernet-keys" "$dir/fernet-receipts" "$dir/credential-keys" "$dir/log"
    mkdir "$dir/log" "$dir/fernet-keys" "$dir/fernet-receipts" "$dir/credential-keys"
    # A leftover database of an unfinished set-up is dropped and made anew.
    psql_admin <<SQL
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$db';
DROP DATABASE IF EXISTS $db;
DO \$\$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$db') THEN
    CREATE ROLE $db LOGIN;
  END IF;
END\$\$;
ALTER ROLE $db WITH LOGIN PASSWORD '$db_password';
CREATE DATABASE $db OWNER $db ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
SQL
    write_config "$dir" "$db" "$db_password" "$db"
    keystone_manage "$dir" db_sync
    keystone_manage "$dir" fernet_setup --keystone-user root --keystone-group root
    keystone_manage "$dir" credential_setup --keystone-user root --keystone-group root
    bootstrap "$dir" "$password"
    touch "$dir/.bootstrapped"
    log "instance $NAME set up in $((SECONDS - t0)) s"
  else
    [[ -n $password && -n $SETTING_DB_PASSWORD ]] || die "instance $NAME is incomplete: run '$0 destroy --name $NAME'"
    mkdir -p "$dir/log"
    write_config "$dir" "$db" "$db_password" "$db"
    # The catalog holds the URL: bootstrap again (idempotent) when the port changed.
    [[ $PORT == "$SETTING_PORT" ]] || bootstrap "$dir" "$password"
  fi
  write_client_files "$dir" "$password"

  [[ $CACHE != memcached ]] || start_memcached "$dir"
  local plugin; plugin=$(uwsgi_python_plugin)
  rm -f "$dir/uwsgi.pid"
  printf '\n==== %s start on port %s\n' "$(date -Is)" "$PORT" >>"$dir/log/uwsgi.log"
  (cd "$dir" && uwsgi --plugins "corerouter,http,$plugin" \
      --http "127.0.0.1:$PORT" --http-keepalive \
      --wsgi-file "$KEYSTONE_WSGI" \
      --master --processes 2 --threads 4 --buffer-size 65535 \
      --lazy-apps --die-on-term --skip-atexit-teardown --umask 077 \
      --procname-prefix-spaced "keystone-$NAME-$DB_SUFFIX" \
      --env "OS_KEYSTONE_CONFIG_FILES=$dir/keystone.conf" \
      --pidfile "$dir/uwsgi.pid" --daemonize "$dir/log/uwsgi.log" \
      </dev/null 8>&- 9>&-)

  local deadline=$((SECONDS + READY_TIMEOUT)) status=""
  while ((SECONDS < deadline)); do
    status=$(http_status "$url")
    [[ $status == 200 ]] && break
    sleep 0.3
  done
  if [[ $status != 200 ]]; then
    log "instance $NAME did not answer 200 at $url within ${READY_TIMEOUT}s (last: ${status:-none})"
    log "tail of $dir/log/uwsgi.log:"
    tail -n 40 "$dir/log/uwsgi.log" >&2
    stop_instance "$dir" || true
    exit 1
  fi
  log "instance $NAME ready at $url (pid $(instance_pid "$dir")); source \"$dir/openrc\""
}

# All descendants of pid $1, deepest first.
descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    descendants "$child"
    echo "$child"
  done
}

stop_instance() {
  local dir=$1 name=${1##*/} pid p i
  local -a procs
  pid=$(instance_pid "$dir")
  # The master, its children, and (should the master have died alone) any
  # process named after the instance and its state folder (--procname-prefix-spaced
  # "keystone-NAME-SUFFIX": another checkout's instance of the same name is not ours).
  mapfile -t procs < <({ [[ -z $pid ]] || { echo "$pid"; descendants "$pid"; }
                         pgrep -f "^keystone-$name-$DB_SUFFIX uWSGI " || true; } | sort -u)
  stop_memcached "$dir"
  if ((${#procs[@]} == 0)); then
    rm -f "$dir/uwsgi.pid"
    log "instance $name is not running"
    return
  fi
  # SIGINT: uWSGI's immediate shutdown. A worker still importing Keystone can
  # ignore it, so whatever is left after 5 s is killed.
  if [[ -n $pid ]]; then kill -INT "$pid"; else kill -INT "${procs[@]}"; fi 2>/dev/null || true
  local left=()
  for ((i = 0; i < 50; i++)); do
    left=()
    for p in "${procs[@]}"; do
      if pid_alive "$p"; then left+=("$p"); fi
    done
    ((${#left[@]})) || break
    sleep 0.1
  done
  if ((${#left[@]})); then
    kill -KILL "${left[@]}" 2>/dev/null || true
  fi
  rm -f "$dir/uwsgi.pid"
  log "instance $name stopped"
}

# Stops an instance under its lock (so that it does not race a start).
stop_locked() {
  local dir=$1
  exec 9>"$dir/.lock"
  flock -w 300 9 || die "timed out waiting for the lock of instance ${dir##*/}"
  stop_instance "$dir"
  exec 9>&-
}

instances() {
  local d
  for d in "$STATE_ROOT"/*/; do
    [[ -d $d ]] && basename "$d"
  done
}

cmd_stop() {
  local name
  if ((ALL)); then
    for name in $(instances); do stop_locked "$(instance_dir "$name")"; done
  else
    if [[ -d $(instance_dir "$NAME") ]]; then
      stop_locked "$(instance_dir "$NAME")"
    else
      log "no instance $NAME"
    fi
  fi
}

cmd_destroy() {
  require_root
  local dir; dir=$(instance_dir "$NAME")
  local db="keystone_${NAME}_$DB_SUFFIX"
  if [[ -d $dir ]]; then stop_locked "$dir"; fi
  if command -v pg_ctlcluster >/dev/null; then
    mkdir -p "$STATE_ROOT"
    exec 8>"$STATE_ROOT/.lock"
    flock 8
    pg_ensure_running
    flock -u 8
    psql_admin <<SQL
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$db';
DROP DATABASE IF EXISTS $db;
DROP ROLE IF EXISTS $db;
SQL
  fi
  rm -rf "$dir"
  log "instance $NAME destroyed"
}

cmd_status() {
  local name dir pid port state any=0
  printf '%-16s %-6s %-8s %-5s %s\n' NAME PORT PID TOTP STATE
  for name in $(instances); do
    any=1
    dir=$(instance_dir "$name")
    read_settings "$dir"
    port=${SETTING_PORT:--}
    pid=$(instance_pid "$dir")
    if [[ -z $pid ]]; then
      state=stopped
    elif [[ $(http_status "http://127.0.0.1:$port/v3") == 200 ]]; then
      state=answering
    else
      state="running, not answering"
    fi
    local totp=no
    [[ ,$SETTING_METHODS, == *,totp,* ]] && totp=yes
    printf '%-16s %-6s %-8s %-5s %s\n' "$name" "$port" "${pid:--}" "$totp" "$state"
  done
  ((any)) || log "no instances in $STATE_ROOT"
}

cmd_env() {
  local rc; rc="$(instance_dir "$NAME")/openrc"
  [[ -f $rc ]] || die "instance $NAME has no openrc yet: run '$0 start --name $NAME'"
  printf '%s\n' "$rc"
}

cmd_stop_postgres() {
  require_root
  local version cluster _ status
  while read -r version cluster _ status _; do
    [[ $status == online ]] || continue
    log "stopping PostgreSQL $version/$cluster"
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop </dev/null
  done < <(pg_lsclusters --no-header 2>/dev/null || true)
}

main() {
  (($#)) || usage
  local cmd=$1; shift
  case $cmd in
    install) (($# == 0)) || die "install takes no options"; cmd_install ;;
    start) parse_opts "$@"; ((ALL == 0)) || die "start does not take --all"; cmd_start ;;
    stop) parse_opts "$@"; cmd_stop ;;
    destroy) parse_opts "$@"; cmd_destroy ;;
    status) parse_opts "$@"; cmd_status ;;
    env) parse_opts "$@"; cmd_env ;;
    stop-postgres) cmd_stop_postgres ;;
    -h|--help|help) usage 0 ;;
    *) log "unknown command: $cmd"; usage ;;
  esac
}

main "$@"
