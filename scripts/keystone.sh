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
#                             [--cache none|memcached] [--release 22|27|30]
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
#       --release picks the Keystone release (see docs/releases.md): 22 (the
#       default) is the host's Debian 12 package (2:22.0.2); 27 is Debian trixie's
#       and 30 is sid's, each run from a chroot (debootstrap --variant=minbase,
#       Debian's packages) built on first use, about 4 min, and cached outside the
#       repository in ${KEYSTONE_TOTP_CHROOT_CACHE:-/var/cache/keystone-totp/chroot}/SUITE.
#       uWSGI and keystone-manage run with `chroot`; the instance folder is
#       bind-mounted at the same path inside (with /proc and /dev) and unmounted
#       on stop. On 27 and 30 --cache defaults to memcached, on TCP 127.0.0.1 at a
#       free port from ${KEYSTONE_MEMCACHED_BASE_PORT:-11300} up (30 only enforces
#       single-use TOTP codes with a cache). An instance keeps its release: to
#       change it, destroy the instance or use another name.
#   scripts/keystone.sh prepare --release 27|30
#       Build and cache that release's chroot only (nothing when already cached;
#       a concurrent start waits for the build instead of building again).
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
#                    "methods","totpEnabled","tokenExpiration","listLimit","cache",
#                    "release"}
#   admin-password, keystone.conf, settings (port, methods, ..., DB password),
#   port (the port it uses or is about to use, so that no other instance takes it),
#   uwsgi.pid, log/ (uwsgi.log, setup.log, Keystone's own logs),
#   memcached.pid and memcached.sock (with --cache memcached; no socket on 27/30,
#   whose memcached port is in settings),
#   fernet-keys/, fernet-receipts/, credential-keys/, .bootstrapped, .lock
#
# Environment: KEYSTONE_TOTP_PASSWORD_HASH_ROUNDS=N writes `[identity]
# password_hash_rounds = N` (bcrypt, 4..31) on start: passwords stored from then
# on are hashed with N rounds (Keystone's default, 12, when unset).
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
# bcrypt rounds of the passwords Keystone stores from now on ([identity] password_hash_rounds);
# empty keeps Keystone's default (12: about 0.3 s of CPU per login or user created, here).
# scripts/test.sh sets 4: the tests create hundreds of users and log in thousands of times on
# 2 cores, and how Keystone hashes passwords is not what they test.
readonly HASH_ROUNDS="${KEYSTONE_TOTP_PASSWORD_HASH_ROUNDS:-}"
[[ -z $HASH_ROUNDS || $HASH_ROUNDS =~ ^([4-9]|[12][0-9]|3[01])$ ]] \
  || { echo "keystone.sh: KEYSTONE_TOTP_PASSWORD_HASH_ROUNDS must be 4..31" >&2; exit 2; }
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
# Keystone releases: 22 is the host's (Debian 12) package; the others run from a chroot of a
# newer Debian suite, built once with debootstrap and cached outside the repository.
readonly DEFAULT_RELEASE=22
declare -rA RELEASE_SUITES=([27]=trixie [30]=sid)
readonly RELEASES_TEXT="22, 27 or 30"
readonly CHROOT_CACHE="${KEYSTONE_TOTP_CHROOT_CACHE:-/var/cache/keystone-totp/chroot}"
readonly CHROOT_MIRROR=http://deb.debian.org/debian
readonly CHROOT_PACKAGES=(keystone uwsgi-core uwsgi-plugin-python3 python3-psycopg2 python3-memcache)
# Written last into a finished chroot: a chroot without it is not ready.
readonly CHROOT_MARK=etc/keystone-totp-chroot
# memcached of a chroot release listens on TCP (a unix socket in .local is not visible inside):
# the first free port from here up.
readonly MEMCACHED_BASE_PORT=${KEYSTONE_MEMCACHED_BASE_PORT:-11300}

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

# ----------------------------------------------------- release of an instance --

# The chroot the instance's Keystone runs in; empty for the host's release.
CHROOT_DIR=""

# Runs a command of the instance's Keystone: on the host, or in its release's chroot.
in_release() {
  if [[ -z $CHROOT_DIR ]]; then
    "$@"
  else
    chroot "$CHROOT_DIR" /usr/bin/env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
  fi
}

# Makes the instance folder $1 visible at the same path inside CHROOT_DIR (with /proc and
# /dev), mounted exactly once: a stale or stacked mount there is removed first.
mount_instance() {
  local dir=$1
  [[ -n $CHROOT_DIR ]] || return 0
  chroot_lock "$RELEASE"
  mount_system "$CHROOT_DIR"
  unmount_under "$CHROOT_DIR$dir"
  mkdir -p "$CHROOT_DIR$dir"
  mount --bind "$dir" "$CHROOT_DIR$dir"
  chroot_unlock
}

# Unmounts the instance folder $1 from every release's chroot, and a chroot's /proc and /dev
# once no instance folder is mounted in it any more.
unmount_instance() {
  local dir=$1 release root m
  for release in "${!RELEASE_SUITES[@]}"; do
    root=$(chroot_root "$release")
    [[ -d $root ]] || continue
    [[ -n $(mounts_under "$root") ]] || continue
    chroot_lock "$release"
    unmount_under "$root$dir"
    rmdir "$root$dir" 2>/dev/null || true    # the empty mount point (never its contents)
    local others=0
    while IFS= read -r m; do
      [[ -n $m && $m != "$root/proc" && $m != "$root/dev" ]] && others=1
    done < <(mounts_under "$root")
    if ((others == 0)); then unmount_under "$root/proc"; unmount_under "$root/dev"; fi
    chroot_unlock
  done
}

# ------------------------------------------------------------------ chroots --

release_suite() { printf '%s' "${RELEASE_SUITES[$1]:-}"; }
chroot_root() { printf '%s/%s' "$CHROOT_CACHE" "$(release_suite "$1")"; }
chroot_ready() { [[ -f $1/$CHROOT_MARK ]]; }

# Mount points at or under $1 (deepest first), from /proc/self/mountinfo (octal escapes decoded).
mounts_under() {
  local prefix=$1
  awk '{print $5}' /proc/self/mountinfo | while IFS= read -r m; do
    [[ $m != *\\* ]] || m=$(printf '%b' "$m")
    [[ $m == "$prefix" || $m == "$prefix"/* ]] && printf '%s\n' "$m"
  done | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-
}

# Unmounts everything at or under $1, stacked mounts included (lazily when busy).
unmount_under() {
  local m i
  for ((i = 0; i < 10; i++)); do
    local -a ms=()
    mapfile -t ms < <(mounts_under "$1")
    ((${#ms[@]})) || return 0
    for m in "${ms[@]}"; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
  die "could not unmount everything under $1"
}

# Removes a chroot directory that is not (or no longer) in use: unmounts first, and never
# crosses into another file system (a /dev left bound must not be emptied).
remove_tree() {
  unmount_under "$1"
  rm -rf --one-file-system "$1"
}

# /proc and /dev inside chroot $1 (each mounted once).
mount_system() {
  local root=$1
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
}

# Takes the lock of a release's chroot (fd 7): builds and mount changes go one at a time.
chroot_lock() {
  local suite; suite=$(release_suite "$1")
  mkdir -p "$CHROOT_CACHE"
  exec 7>"$CHROOT_CACHE/.lock-$suite"
  if ! flock -n 7; then
    log "waiting for the lock of the $suite chroot (another build or start)"
    flock -w 1800 7 || die "timed out waiting for the lock of the $suite chroot"
  fi
}
chroot_unlock() { exec 7>&-; }

CHROOT_BUILD_DIR=""
chroot_build_cleanup() {
  if [[ -n $CHROOT_BUILD_DIR && -d $CHROOT_BUILD_DIR ]]; then
    log "removing the unfinished chroot $CHROOT_BUILD_DIR"
    remove_tree "$CHROOT_BUILD_DIR" || true
  fi
  CHROOT_BUILD_DIR=""
}

# Builds (once) the chroot of release $1 and caches it in CHROOT_CACHE/SUITE. The build goes
# into a temporary folder renamed into place when complete, under the chroot's lock, so an
# interrupted build never counts as ready and two starts never build twice.
ensure_chroot() {
  local release=$1 suite root
  suite=$(release_suite "$release")
  [[ -n $suite ]] || return 0
  root=$(chroot_root "$release")
  chroot_ready "$root" && return 0
  require_root
  chroot_lock "$release"
  if chroot_ready "$root"; then chroot_unlock; return 0; fi
  command -v debootstrap >/dev/null || cmd_install debootstrap
  local stale
  for stale in "$CHROOT_CACHE/.build-$suite".*; do    # left by an interrupted build
    [[ -d $stale ]] || continue
    log "removing the unfinished chroot $stale"
    remove_tree "$stale"
  done
  # A folder at the final place without the mark (not ours, or damaged) is rebuilt.
  [[ ! -e $root ]] || remove_tree "$root"
  local t0=$SECONDS buildlog="$CHROOT_CACHE/$suite.build.log"
  CHROOT_BUILD_DIR=$(mktemp -d "$CHROOT_CACHE/.build-$suite.XXXXXX")
  local tmp=$CHROOT_BUILD_DIR
  trap chroot_build_cleanup EXIT
  trap 'exit 130' INT TERM HUP
  chmod 0755 "$tmp"
  umask 022    # the chroot's files get Debian's usual modes (restored below)
  log "building the Keystone $release chroot (Debian $suite) in $root (a few minutes; log: $buildlog)"
  : >"$buildlog"
  build_step() {
    if ! "$@" >>"$buildlog" 2>&1 </dev/null; then
      log "chroot build failed at: $*; tail of $buildlog:"
      tail -n 30 "$buildlog" >&2
      exit 1
    fi
  }
  build_step debootstrap --variant=minbase "$suite" "$tmp" "$CHROOT_MIRROR"
  log "  debootstrap done in $((SECONDS - t0)) s"
  # The packages' own services must not start in the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
  chmod 0755 "$tmp/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$tmp/etc/resolv.conf"
  mount_system "$tmp"
  # The mirror may be a dated snapshot whose Release files are "expired" (sid).
  build_step chroot "$tmp" apt-get -q -o Acquire::Check-Valid-Until=false update
  build_step chroot "$tmp" apt-get -q -o Acquire::Check-Valid-Until=false install -y \
    --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${CHROOT_PACKAGES[@]}"
  build_step chroot "$tmp" apt-get clean
  local version
  # shellcheck disable=SC2016 # dpkg-query's own ${Version}
  version=$(chroot "$tmp" dpkg-query -W -f='${Version}' keystone)
  unmount_under "$tmp"
  printf 'release=%s\nsuite=%s\nkeystone=%s\nbuilt=%s\n' "$release" "$suite" "$version" "$(date -Is)" \
    >"$tmp/$CHROOT_MARK"
  mv -T "$tmp" "$root"
  CHROOT_BUILD_DIR=""
  trap - EXIT INT TERM HUP
  umask 077
  chroot_unlock
  log "Keystone $release chroot (keystone $version) built in $((SECONDS - t0)) s: $root"
}

cmd_prepare() {
  [[ -n $RELEASE ]] || die "prepare needs --release ($RELEASES_TEXT)"
  if [[ -z $(release_suite "$RELEASE") ]]; then
    log "release $RELEASE runs the host's package: nothing to prepare (see '$0 install')"
    return
  fi
  local root; root=$(chroot_root "$RELEASE")
  if chroot_ready "$root"; then
    log "the Keystone $RELEASE chroot is ready: $root"
    return
  fi
  ensure_chroot "$RELEASE"
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

NAME="default" PORT="" METHODS="" TOKEN_EXPIRATION="" LIST_LIMIT="" CACHE="" RELEASE="" ALL=0

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
      --release) RELEASE=${2:?--release needs a value}; shift 2 ;;
      --release=*) RELEASE=${1#*=}; shift ;;
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
  [[ -z $RELEASE || $RELEASE == "$DEFAULT_RELEASE" || -n $(release_suite "$RELEASE") ]] \
    || die "bad --release '$RELEASE' ($RELEASES_TEXT)"
}

instance_dir() { printf '%s/%s' "$STATE_ROOT" "$1"; }

# Reads key=value lines of the instance's settings file into SETTING_<key>.
read_settings() {
  local file="$1/settings" key value
  SETTING_PORT="" SETTING_METHODS="" SETTING_TOKEN_EXPIRATION="" SETTING_LIST_LIMIT=""
  SETTING_CACHE="" SETTING_DB_PASSWORD="" SETTING_RELEASE="" SETTING_MEMCACHED_PORT="" SETTING_HASH_ROUNDS=""
  [[ -f $file ]] || return 0
  while IFS='=' read -r key value; do
    case $key in
      PORT|METHODS|TOKEN_EXPIRATION|LIST_LIMIT|CACHE|DB_PASSWORD|RELEASE|MEMCACHED_PORT|HASH_ROUNDS) printf -v "SETTING_$key" '%s' "$value" ;;
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

# Prints the first port from MEMCACHED_BASE_PORT up that nothing listens on and that no other
# instance of this state folder uses for its memcached or Keystone.
free_memcached_port() {
  local self=$1 other port claimed=" "
  for other in "$STATE_ROOT"/*/; do
    other=${other%/}
    [[ $other == "$self" ]] && continue
    claimed+="$(read_secret "$other/port") $(sed -n 's/^\(MEMCACHED_\)\{0,1\}PORT=//p' "$other/settings" 2>/dev/null | tr '\n' ' ') "
  done
  for ((port = MEMCACHED_BASE_PORT; port < MEMCACHED_BASE_PORT + AUTO_PORT_SPAN && port <= 65535; port++)); do
    [[ $claimed == *" $port "* || $port == "$PORT" ]] && continue
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
  if [[ -n $HASH_ROUNDS ]]; then
    cat >>"$dir/keystone.conf" <<EOF

[identity]
password_hash_rounds = $HASH_ROUNDS
EOF
  fi
  if [[ $CACHE == memcached ]]; then
    local servers="unix:$dir/memcached.sock"
    [[ -z $CHROOT_DIR ]] || servers="127.0.0.1:$MEMCACHED_PORT"
    cat >>"$dir/keystone.conf" <<EOF

[cache]
enabled = true
backend = oslo_cache.memcache_pool
memcache_servers = $servers
EOF
  fi
  cat >"$dir/settings" <<EOF
PORT=$PORT
METHODS=$METHODS
TOKEN_EXPIRATION=$TOKEN_EXPIRATION
LIST_LIMIT=$LIST_LIMIT
CACHE=$CACHE
RELEASE=$RELEASE
MEMCACHED_PORT=$MEMCACHED_PORT
HASH_ROUNDS=$HASH_ROUNDS
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
  "cache": "$CACHE",
  "release": "$RELEASE"
}
EOF
}

# keystone-manage with output to the setup log (it prints a harmless eventlet
# traceback at exit). It inherits the instance lock on purpose: if this script
# is killed, a new start waits for the orphaned keystone-manage to finish.
keystone_manage() {
  local dir=$1; shift
  if ! in_release keystone-manage --config-file "$dir/keystone.conf" "$@" \
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
  [[ -e $CHROOT_DIR/usr/lib/uwsgi/plugins/python3_plugin.so ]] && { echo python3; return; }
  for f in "$CHROOT_DIR"/usr/lib/uwsgi/plugins/python3*_plugin.so; do
    [[ -e $f ]] && { f=${f##*/}; echo "${f%_plugin.so}"; return; }
  done
  die "no uWSGI python3 plugin in /usr/lib/uwsgi/plugins (install uwsgi-plugin-python3)"
}

# The instance's own memcached, on a unix socket in its folder (no port to share or collide on;
# mode 0600, so only root's Keystone reaches it). Replaces one left from an earlier start.
# A chroot release cannot see that socket: its memcached listens on 127.0.0.1:MEMCACHED_PORT.
start_memcached() {
  local dir=$1 i
  if [[ -n $CHROOT_DIR ]]; then
    command -v memcached >/dev/null || cmd_install memcached
    stop_memcached "$dir"
    memcached -d -u root -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m "$MEMCACHED_MB" -c 4096 \
      -P "$dir/memcached.pid" </dev/null 7>&- 8>&- 9>&- || die "memcached did not start"
    for ((i = 0; i < 50; i++)); do
      port_in_use "$MEMCACHED_PORT" && return 0
      sleep 0.1
    done
    die "memcached did not listen on 127.0.0.1:$MEMCACHED_PORT"
  fi
  if ! command -v memcached >/dev/null || ! /usr/bin/python3 -c 'import memcache' 2>/dev/null; then
    cmd_install "${CACHE_PACKAGES[@]}"
  fi
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

# The default cache of a release: Keystone's own (none) on 22; memcached on the chroot
# releases (30 only enforces single-use TOTP codes with a cache, and oslo.cache's in-process
# memory backend must not be used: on 27 it corrupts cached credentials).
default_cache() { if [[ -n $(release_suite "$1") ]]; then echo memcached; else echo "$DEFAULT_CACHE"; fi; }

cmd_start() {
  require_root
  local dir; dir=$(instance_dir "$NAME")
  # The chroot of a newer release is built (once, minutes) before any instance lock is taken.
  read_settings "$dir"
  local release=${RELEASE:-${SETTING_RELEASE:-$DEFAULT_RELEASE}}
  if [[ -n $(release_suite "$release") ]]; then
    command -v pg_ctlcluster >/dev/null || die "PostgreSQL is not installed: run '$0 install' first"
    ensure_chroot "$release"
  else
    require_packages
  fi
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
  local previous_release=${SETTING_RELEASE:-$DEFAULT_RELEASE}
  RELEASE=${RELEASE:-$previous_release}
  if [[ -f $dir/.bootstrapped && $RELEASE != "$previous_release" ]]; then
    die "instance $NAME runs Keystone $previous_release (its database is of that release):" \
      "destroy it first ('$0 destroy --name $NAME') or use another --name for release $RELEASE"
  fi
  CHROOT_DIR=""
  if [[ -n $(release_suite "$RELEASE") ]]; then
    CHROOT_DIR=$(chroot_root "$RELEASE")
    chroot_ready "$CHROOT_DIR" || die "the Keystone $RELEASE chroot is not ready: run '$0 prepare --release $RELEASE'"
  fi
  CACHE=${CACHE:-${SETTING_CACHE:-$(default_cache "$RELEASE")}}
  MEMCACHED_PORT=""
  [[ $PORT =~ ^[0-9]+$ && PORT -ge 1 && PORT -le 65535 ]] || die "bad port '$PORT'"
  local url="http://127.0.0.1:$PORT/v3"

  local pid; pid=$(instance_pid "$dir")
  if [[ -n $pid ]]; then
    if [[ $PORT == "${SETTING_PORT}" && $METHODS == "${SETTING_METHODS}" &&
          $TOKEN_EXPIRATION == "${SETTING_TOKEN_EXPIRATION}" &&
          $LIST_LIMIT == "${SETTING_LIST_LIMIT:-$DEFAULT_LIST_LIMIT}" &&
          $CACHE == "${SETTING_CACHE:-$DEFAULT_CACHE}" && $RELEASE == "$previous_release" &&
          $HASH_ROUNDS == "${SETTING_HASH_ROUNDS}" &&
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
  if [[ $CACHE == memcached && -n $CHROOT_DIR ]]; then
    # A memcached left running without its Keystone is replaced; its port is kept when free.
    stop_memcached "$dir"
    MEMCACHED_PORT=$SETTING_MEMCACHED_PORT
    if [[ -z $MEMCACHED_PORT ]] || port_in_use "$MEMCACHED_PORT"; then
      MEMCACHED_PORT=$(free_memcached_port "$dir") \
        || die "no free port for memcached from $MEMCACHED_BASE_PORT to $((MEMCACHED_BASE_PORT + AUTO_PORT_SPAN - 1))"
    fi
    # Claimed in the settings while the instances lock is held (the whole file is rewritten
    # with the other settings below; a first start's file holds only this line until then).
    [[ ! -f $dir/settings ]] || sed -i '/^MEMCACHED_PORT=/d' "$dir/settings"
    printf 'MEMCACHED_PORT=%s\n' "$MEMCACHED_PORT" >>"$dir/settings"
  fi

  pg_ensure_running
  flock -u 8    # PostgreSQL is up; roles and databases below are per instance

  local db="keystone_${NAME}_$DB_SUFFIX" db_password password fresh=0
  [[ -f $dir/.bootstrapped ]] || fresh=1
  db_password=${SETTING_DB_PASSWORD:-$(random_alnum 32)}
  password=$(read_secret "$dir/admin-password")
  mount_instance "$dir"
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
  # 22 and 27 ship the WSGI script; 30 has only the module.
  local -a app=(--wsgi-file "$KEYSTONE_WSGI")
  [[ -z $CHROOT_DIR || -f $CHROOT_DIR$KEYSTONE_WSGI ]] || app=(--module keystone.wsgi.api:application)
  (cd "$dir" && in_release uwsgi --plugins "corerouter,http,$plugin" \
      --http "127.0.0.1:$PORT" --http-keepalive --chdir "$dir" \
      "${app[@]}" \
      --master --processes 2 --threads 4 --buffer-size 65535 \
      --lazy-apps --die-on-term --skip-atexit-teardown --umask 077 \
      --procname-prefix-spaced "keystone-$NAME-$DB_SUFFIX" \
      --env "OS_KEYSTONE_CONFIG_FILES=$dir/keystone.conf" \
      --pidfile "$dir/uwsgi.pid" --daemonize "$dir/log/uwsgi.log" \
      </dev/null 7>&- 8>&- 9>&-)

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
  log "instance $NAME (Keystone $RELEASE) ready at $url (pid $(instance_pid "$dir")); source \"$dir/openrc\""
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
    unmount_instance "$dir"
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
  unmount_instance "$dir"
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
  printf '%-16s %-6s %-8s %-5s %-7s %s\n' NAME PORT PID TOTP RELEASE STATE
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
    printf '%-16s %-6s %-8s %-5s %-7s %s\n' "$name" "$port" "${pid:--}" "$totp" \
      "${SETTING_RELEASE:-$DEFAULT_RELEASE}" "$state"
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
    prepare) parse_opts "$@"; cmd_prepare ;;
    stop-postgres) cmd_stop_postgres ;;
    -h|--help|help) usage 0 ;;
    *) log "unknown command: $cmd"; usage ;;
  esac
}

main "$@"
