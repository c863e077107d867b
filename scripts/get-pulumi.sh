#!/usr/bin/env bash
# Make the Pulumi CLI available without Pulumi's download site.
#
# The CLI is built from its Go modules (the Go module proxy is reachable) into
#   $PULUMI_HOME/versions/<version>/bin/pulumi        (PULUMI_HOME defaults to ~/.pulumi)
# the same place where the npm `pulumi` launcher and the Automation API
# (PulumiCommand.install / PulumiCommand.get) look for a cached CLI.
# The dynamic-provider shim `pulumi-resource-pulumi-nodejs` (from the
# @pulumi/pulumi npm package) is put beside it, and so is the Node language
# host `pulumi-language-nodejs` (what plain `pulumi up` runs index.ts with) when it
# can be had: from beside a `pulumi` found on PATH, else built by
# ../shared/tools/build-pulumi-language-nodejs.sh (the repo's parent folder holds
# that tool and the upstream source on these machines and in CI), else from its
# Go module (see PULUMI_LANGUAGE_NODEJS_MODULE_VERSION). It is built only when
# missing. Without it only the Automation API (`npm run provision`) runs the
# program. With CI=true and ../shared present, failing to build it is an error.
#
# Usage:
#   scripts/get-pulumi.sh                  # logs on stderr, last line on stdout: PULUMI_BIN_DIR=<dir>
#   scripts/get-pulumi.sh --print-bin-dir  # prints only <dir> on stdout
#   eval "$(scripts/get-pulumi.sh)" && export PATH="$PULUMI_BIN_DIR:$PATH"
#
# Environment:
#   PULUMI_VERSION       version to build (default 3.276.0; a leading "v" is ignored)
#   PULUMI_MIN_VERSION   a pulumi already on PATH is used if it is at least this (default PULUMI_VERSION)
#   PULUMI_HOME          cache root (default ~/.pulumi)
#   PULUMI_LANGUAGE_NODEJS_MODULE_VERSION
#                        version (a pseudo-version) of the Go module
#                        github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3
#                        to build the Node language host from when ../shared does not
#                        provide it; that module has no tags, and the module proxy used
#                        here does not serve it (inline Automation API programs do not
#                        need the language host).
set -euo pipefail

DEFAULT_PULUMI_VERSION=3.276.0
CLI_PKG=github.com/pulumi/pulumi/pkg/v3
SDK_MOD=github.com/pulumi/pulumi/sdk/v3
LANG_NODEJS_MOD=github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3
SHIM=pulumi-resource-pulumi-nodejs

log() { printf 'get-pulumi: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
}

print_only=false
case "${1:-}" in
    "") ;;
    --print-bin-dir) print_only=true ;;
    -h | --help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
esac

version="${PULUMI_VERSION:-$DEFAULT_PULUMI_VERSION}"
version="${version#v}"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "PULUMI_VERSION must look like 3.276.0, got '$version'"
min_version="${PULUMI_MIN_VERSION:-$version}"
min_version="${min_version#v}"
lang_mod_version="${PULUMI_LANGUAGE_NODEJS_MODULE_VERSION:-}"

pulumi_home="${PULUMI_HOME:-$HOME/.pulumi}"
# Same layout as the npm launcher (lib/cache.js) and the Automation API
# (automation/cmd.js withDefaults): versions/<semver without "v">/bin.
bin_dir="$pulumi_home/versions/$version/bin"
build_dir="$pulumi_home/build/$version"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
project_dir="$(dirname "$script_dir")"
# Builds the language host from the upstream source kept in ../shared/vendor (a build
# input: read only, nothing is copied out of it but the binary the tool writes).
lang_builder="$(dirname "$project_dir")/shared/tools/build-pulumi-language-nodejs.sh"
[[ -f "$lang_builder" ]] || lang_builder=""

export PULUMI_SKIP_UPDATE_CHECK=true

finish() {
    if $print_only; then
        printf '%s\n' "$bin_dir"
    else
        log "pulumi CLI: $bin_dir/pulumi (v$(cut -d' ' -f1 "$build_dir/cli.ok"))"
        printf 'PULUMI_BIN_DIR=%q\n' "$bin_dir"
    fi
    exit 0
}

# cli_version BIN: prints the version (without "v") that BIN reports, or nothing.
cli_version() {
    local out
    out="$(timeout 30 "$1" version 2>/dev/null </dev/null)" || return 0
    out="${out#v}"
    [[ "$out" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] && printf '%s\n' "${BASH_REMATCH[0]}"
    return 0
}

# version_ge A B: true if version A >= version B (X.Y.Z).
version_ge() {
    [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$2" ]]
}

# cli_ok BIN: true if BIN runs and reports a version >= min_version.
cli_ok() {
    local v
    [[ -x "$1" ]] || return 1
    v="$(cli_version "$1")"
    [[ -n "$v" ]] && version_ge "$v" "$min_version"
}

# The cached CLI was checked (cli_ok) when $build_dir/cli.ok was written:
# "<version> <size> <mtime>" of the binary. Running the 120 MB binary takes
# about 0.5 s, so the fast path only compares this stamp.
cli_stamp() {
    local v="$1"
    printf '%s %s\n' "$v" "$(stat -L -c '%s %Y' "$bin_dir/pulumi" 2>/dev/null)"
}
cached_cli_ok() {
    local stamp v
    [[ -x "$bin_dir/pulumi" && -f "$build_dir/cli.ok" ]] || return 1
    stamp="$(cat "$build_dir/cli.ok")"
    v="${stamp%% *}"
    [[ "$stamp" == "$(cli_stamp "$v")" ]] && version_ge "$v" "$min_version"
}
check_cached_cli() {
    cached_cli_ok && return 0
    cli_ok "$bin_dir/pulumi" || return 1
    mkdir -p "$build_dir"
    cli_stamp "$(cli_version "$bin_dir/pulumi")" >"$build_dir/cli.ok"
}

# What $build_dir/language-nodejs.skipped holds when building the language host was
# given up for the current source of it (so that later runs stay fast).
lang_skip_key() {
    if [[ -n "$lang_builder" ]]; then
        printf '%s\n' "shared-build-failed"
    else
        printf '%s\n' "${lang_mod_version:-none}"
    fi
}

# The language host is done when it is there, or when building it was given up for
# its current source; in CI, where ../shared is always there, only when it is there.
lang_done() {
    [[ -x "$bin_dir/pulumi-language-nodejs" ]] && return 0
    [[ -n "$lang_builder" && "${CI:-}" == "true" ]] && return 1
    [[ -f "$build_dir/language-nodejs.skipped" ]] &&
        [[ "$(cat "$build_dir/language-nodejs.skipped")" == "$(lang_skip_key)" ]]
}

all_done() {
    [[ -x "$bin_dir/$SHIM" ]] && lang_done && check_cached_cli
}

# Fast path: everything is cached already.
if all_done; then
    finish
fi

mkdir -p "$bin_dir" "$build_dir"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$build_dir/.lock"
    flock -n 9 || {
        log "waiting for another run to finish (lock $build_dir/.lock)"
        flock 9
    }
fi
# Another run may have finished the work while we waited.
if all_done; then
    finish
fi

setup_go() {
    # The machine's Go lives in /usr/local/go; a non-login shell (CI) may not have it on PATH.
    if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
        export PATH="/usr/local/go/bin:$PATH"
    fi
    command -v go >/dev/null 2>&1 || die "go is not on PATH (the CLI is built from source; Go >= 1.26 is needed, e.g. /usr/local/go/bin)"
    if [[ -z "$(go env GOPROXY)" ]]; then
        export GOPROXY=https://proxy.golang.org,direct
    fi
    local goflags
    goflags="$(go env GOFLAGS)"
    if [[ " $goflags " != *" -mod="* ]]; then
        export GOFLAGS="${goflags:+$goflags }-mod=mod"
    fi
    export CGO_ENABLED=0
}

# wrapper_module DIR: a throwaway main module in DIR that takes the non-relative
# replace directives of pkg/go.mod at the pinned version (go install cannot be
# used: pkg/go.mod has replace directives).
wrapper_module() {
    local dir="$1" tmp gomod line old new
    [[ -f "$dir/go.mod" ]] && return 0
    tmp="$dir.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    (cd "$tmp" && go mod init pulumi-cli-build >/dev/null 2>&1)
    gomod="$(go mod download -json "$CLI_PKG@v$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')" ||
        die "cannot download $CLI_PKG@v$version from the Go module proxy ($(go env GOPROXY))"
    [[ -f "$gomod" ]] || die "no go.mod for $CLI_PKG@v$version in the module cache"
    # replace lines, single or in a block; keep those not pointing to a local path
    while IFS= read -r line; do
        line="${line%%//*}"
        [[ "$line" == *"=>"* ]] || continue
        old="$(awk '{print $1 (NF > 1 ? "@" $2 : "")}' <<<"${line%%=>*}")"
        new="$(awk '{print $1 (NF > 1 ? "@" $2 : "")}' <<<"${line#*=>}")"
        case "$new" in .* | /*) continue ;; esac
        log "replace $old => $new (from pkg/go.mod)"
        (cd "$tmp" && go mod edit -replace "$old=$new")
    done < <(awk '
        /^replace[ \t]*\(/ { blk = 1; next }
        blk && /^\)/      { blk = 0; next }
        blk               { print; next }
        /^replace[ \t]/   { sub(/^replace[ \t]+/, ""); print }' "$gomod")
    rm -rf "$dir" && mv "$tmp" "$dir"
}

build_cli() {
    local dir="$build_dir/cli" start tmp
    start=$SECONDS
    log "building the pulumi CLI v$version from the Go modules into $bin_dir (cold: several minutes)"
    wrapper_module "$dir"
    (cd "$dir" && go get "$CLI_PKG/cmd/pulumi@v$version" "$SDK_MOD@v$version" 2>"$build_dir/go-get.log") ||
        { tail -n 30 "$build_dir/go-get.log" >&2; die "go get of $CLI_PKG@v$version failed (log: $build_dir/go-get.log)"; }
    log "modules fetched in $((SECONDS - start))s; compiling"
    tmp="$bin_dir/.pulumi.tmp.$$"
    (cd "$dir" && go build -trimpath \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" \
        -o "$tmp" "$CLI_PKG/cmd/pulumi") || { rm -f "$tmp"; die "building the pulumi CLI failed"; }
    mv -f "$tmp" "$bin_dir/pulumi"
    log "built pulumi v$version in $((SECONDS - start))s"
}

# build_shared_language_host: runs ../shared's build tool into $bin_dir (it writes
# the binary under a temporary name and renames it, so a reader never sees half a file).
build_shared_language_host() {
    local start=$SECONDS logf="$build_dir/build-language-nodejs.log"
    log "building pulumi-language-nodejs with $lang_builder (warm: under a minute, cold: a few minutes)"
    if ! bash "$lang_builder" "$bin_dir" >"$logf" 2>&1; then
        tail -n 20 "$logf" >&2
        [[ "${CI:-}" == "true" ]] && die "building pulumi-language-nodejs failed (log: $logf); CI needs it for the plain-CLI tests"
        log "warning: building pulumi-language-nodejs failed (log: $logf); going on without it:"
        log "  plain \`pulumi up\` cannot run the program, \`npm run provision\` can. To retry:"
        log "  rm $build_dir/language-nodejs.skipped"
        lang_skip_key >"$build_dir/language-nodejs.skipped"
        return 0
    fi
    rm -f "$build_dir/language-nodejs.skipped"
    log "built $bin_dir/pulumi-language-nodejs in $((SECONDS - start))s"
}

build_language_host() {
    local dir="$build_dir/language-nodejs" start tmp
    if [[ -n "$lang_builder" ]]; then
        build_shared_language_host
        return 0
    fi
    if [[ -z "$lang_mod_version" ]]; then
        log "skipping pulumi-language-nodejs: its Go module has no version tags (a pseudo-version is needed) and"
        log "  the module proxy used here does not serve that module. Set PULUMI_LANGUAGE_NODEJS_MODULE_VERSION=<pseudo-version>"
        log "  to try one, or put the tool shared/tools/build-pulumi-language-nodejs.sh beside this"
        log "  repository. Inline Automation API programs (npm run provision) do not need the language host."
        printf '%s\n' none >"$build_dir/language-nodejs.skipped"
        return 0
    fi
    start=$SECONDS
    log "building pulumi-language-nodejs ($LANG_NODEJS_MOD@$lang_mod_version)"
    if ! {
        wrapper_module "$dir" &&
            (cd "$dir" && go get "$LANG_NODEJS_MOD@$lang_mod_version" "$CLI_PKG@v$version" "$SDK_MOD@v$version" \
                2>"$build_dir/go-get-language-nodejs.log")
    }; then
        tail -n 5 "$build_dir/go-get-language-nodejs.log" >&2
        log "warning: cannot get $LANG_NODEJS_MOD@$lang_mod_version; going on without the language host"
        rm -rf "$dir"
        printf '%s\n' "$lang_mod_version" >"$build_dir/language-nodejs.skipped"
        return 0
    fi
    tmp="$bin_dir/.pulumi-language-nodejs.tmp.$$"
    (cd "$dir" && go build -trimpath \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" \
        -o "$tmp" "$LANG_NODEJS_MOD") || { rm -f "$tmp"; die "building pulumi-language-nodejs failed"; }
    mv -f "$tmp" "$bin_dir/pulumi-language-nodejs"
    rm -f "$build_dir/language-nodejs.skipped"
    log "built pulumi-language-nodejs in $((SECONDS - start))s"
}

install_shim() {
    local src="$project_dir/node_modules/@pulumi/pulumi/$SHIM" tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    if [[ ! -f "$src" ]]; then
        log "fetching $SHIM from the npm package @pulumi/pulumi@$version"
        (cd "$tmp" && npm pack --silent "@pulumi/pulumi@$version" >/dev/null) ||
            die "npm pack @pulumi/pulumi@$version failed"
        tar -xzf "$tmp"/pulumi-pulumi-*.tgz -C "$tmp" "package/$SHIM"
        src="$tmp/package/$SHIM"
    fi
    cp "$src" "$bin_dir/.$SHIM.tmp.$$"
    chmod 755 "$bin_dir/.$SHIM.tmp.$$"
    mv -f "$bin_dir/.$SHIM.tmp.$$" "$bin_dir/$SHIM"
    log "installed $bin_dir/$SHIM (from $src)"
}

if ! check_cached_cli; then
    path_cli="$(command -v pulumi 2>/dev/null || true)"
    [[ -n "$path_cli" ]] && path_cli="$(readlink -f "$path_cli")"
    # only a real CLI binary, not the npm launcher script (it would download)
    if [[ -n "$path_cli" && "$path_cli" != "$bin_dir/pulumi" ]] &&
        [[ "$(head -c4 "$path_cli" 2>/dev/null | od -An -c | tr -d ' ')" == '177ELF' ]] &&
        cli_ok "$path_cli"; then
        log "using $path_cli ($(cli_version "$path_cli") >= $min_version) from PATH"
        ln -sfn "$path_cli" "$bin_dir/pulumi"
        if [[ -x "$(dirname "$path_cli")/pulumi-language-nodejs" && ! -e "$bin_dir/pulumi-language-nodejs" ]]; then
            ln -sfn "$(dirname "$path_cli")/pulumi-language-nodejs" "$bin_dir/pulumi-language-nodejs"
        fi
    else
        setup_go
        build_cli
    fi
fi
if ! lang_done; then
    # ../shared's tool finds Go by itself; the module path needs the Go set-up.
    [[ -n "$lang_builder" ]] || setup_go
    build_language_host
fi
[[ -x "$bin_dir/$SHIM" ]] || install_shim
all_done || die "the CLI in $bin_dir does not work"
finish
