#!/usr/bin/env bash
# Build the vendored nginx: recipe.sh OUT_DIR WORK_DIR
#
# Sources come from manifest.tsv beside this file (name, version, source, url, sha256); every
# download goes to a temporary file, is checked against its sha256 and only then renamed into
# WORK_DIR/downloads. Rows with the same name are mirrors of one file, tried in order.
#
# NGINX_SOURCE picks what is built (default: debian):
#   debian    the pristine upstream tarball (from nginx.org where reachable, else Debian's
#             byte-identical .orig.tar.gz) plus Debian's patches (security fixes) from the
#             .debian.tar.xz, applied by dpkg-source -x.
#   upstream  the pristine upstream tarball alone, unpatched.
#
# The result is relocatable: every compiled-in path is relative to a prefix that does not
# exist (/nonexistent), the default error log is stderr, and the runtime passes -p and -c and
# sets pid, logs and temp paths in its own config. pcre2, zlib and OpenSSL are linked
# dynamically against the system libraries (libpcre2-8.so.0, libz.so.1, libssl.so.3,
# libcrypto.so.3), which every Heroku/herokuish stack has, so security updates of those
# libraries reach nginx with the stack image rather than with a rebuild of ours.
#
# OUT_DIR is published atomically: the install goes to OUT_DIR.tmp.$$, which is renamed to
# OUT_DIR once complete; a failed or killed build leaves no OUT_DIR. Layout:
#   bin/nginx  conf/mime.types  conf/uwsgi_params  LICENSE  VERSION
# VERSION is one line: "<nginx version> <source> <recipe hash>", where the recipe hash is the
# first 12 hex digits of sha256(manifest.tsv + recipe.sh), as in mk/nginx.mk's NGINX_KEY.
set -euo pipefail

INDENT='       '
say() { printf '%s%s\n' "$INDENT" "$*"; }
warn() { printf ' !     Warning: %s\n' "$1" >&2; shift; local l; for l in "$@"; do printf ' !     %s\n' "$l" >&2; done; }
die() { printf ' !     Error: %s\n' "$1" >&2; shift; local l; for l in "$@"; do printf ' !     %s\n' "$l" >&2; done; exit 1; }

usage() { die "Usage: recipe.sh OUT_DIR WORK_DIR" "Builds nginx into OUT_DIR; WORK_DIR keeps downloads and the build log."; }
[[ $# -eq 2 && -n $1 && -n $2 ]] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recipe="$here/$(basename "${BASH_SOURCE[0]}")"
manifest=${NGINX_MANIFEST:-$here/manifest.tsv}
source_kind=${NGINX_SOURCE:-debian}
case $source_kind in
    debian | upstream) ;;
    *) die "NGINX_SOURCE must be 'debian' or 'upstream', not '$source_kind'." ;;
esac
[[ -r $manifest ]] || die "Cannot read the nginx manifest $manifest."

mkdir -p "$(dirname "$1")" "$2" || die "Cannot create the directories for $1 and $2."
out_parent=$(cd "$(dirname "$1")" && pwd)
out_dir="$out_parent/$(basename "$1")"
work_dir=$(cd "$2" && pwd)
downloads="$work_dir/downloads"
log_file="$work_dir/nginx-build.log"
mkdir -p "$downloads"

recipe_hash=$(cat "$manifest" "$recipe" | sha256sum | cut -c1-12)

# --- manifest ---------------------------------------------------------------------------
declare -a m_name=() m_version=() m_source=() m_url=() m_sha=()
while IFS=$'\t' read -r name version src url sha rest || [[ -n $name ]]; do
    [[ -z $name || $name == \#* || $name == name ]] && continue
    [[ -z ${rest:-} && -n $sha && $sha =~ ^[0-9a-f]{64}$ ]] ||
        die "Malformed row in $manifest: '$name'." "Rows are: name, version, source, url, sha256 (64 hex), tab-separated."
    m_name+=("$name") m_version+=("$version") m_source+=("$src") m_url+=("$url") m_sha+=("$sha")
done <"$manifest"

first_row() { # first_row NAME_GLOB [SOURCE] -> index of the first matching manifest row
    local i
    for i in "${!m_name[@]}"; do
        # shellcheck disable=SC2053 # $1 is a glob on purpose
        if [[ ${m_name[i]} == $1 && ( -z ${2:-} || ${m_source[i]} == "$2" ) ]]; then
            echo "$i"
            return 0
        fi
    done
    return 1
}

i=$(first_row '*.tar.gz' upstream) || die "The manifest $manifest has no upstream tarball row."
upstream_name=${m_name[i]}
nginx_version=${m_version[i]}
upstream_sha=${m_sha[i]}

already_built() {
    [[ -e $out_dir ]] || return 1
    [[ -f $out_dir/VERSION ]] || die "$out_dir exists but is not a finished nginx build." "Remove it and run the build again."
    say "Already built: $out_dir ($(cat "$out_dir/VERSION"))"
}
already_built && exit 0

# --- build dependencies -----------------------------------------------------------------
check_deps() {
    local -a missing=()
    local cmd pkg
    for cmd in gcc:gcc make:make curl:curl patch:patch sha256sum:coreutils tar:tar gzip:gzip strip:binutils; do
        command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd#*:}")
    done
    if [[ $source_kind == debian ]]; then
        command -v dpkg-source >/dev/null 2>&1 || missing+=(dpkg-dev)
        command -v xz >/dev/null 2>&1 || missing+=(xz-utils)
    fi
    local header
    for header in 'pcre2.h:libpcre2-dev' 'zlib.h:zlib1g-dev' 'openssl/ssl.h:libssl-dev'; do
        pkg=${header#*:}
        if command -v gcc >/dev/null 2>&1; then
            printf '#define PCRE2_CODE_UNIT_WIDTH 8\n#include <%s>\n' "${header%%:*}" |
                gcc -E -x c - >/dev/null 2>&1 || missing+=("$pkg")
        else
            [[ -f /usr/include/${header%%:*} ]] || missing+=("$pkg")
        fi
    done
    if ((${#missing[@]})); then
        # Developer targets (make serve, make vendor, make test) set DC_AUTO_APT=1: on a fresh
        # Debian machine, as root, they install what is missing. A platform build never does.
        if [[ ${DC_AUTO_APT:-0} == 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            say "Installing nginx's build dependencies: ${missing[*]}"
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${missing[@]}"; } >>"$work_dir/apt.log" 2>&1 ||
                die "apt-get could not install ${missing[*]}." "Its log is $work_dir/apt.log."
            return 0
        fi
        die "Missing build dependencies for nginx: ${missing[*]}." \
            "Install them with: sudo apt-get install -y ${missing[*]}"
    fi
}
check_deps

# --- locking and cleanup ----------------------------------------------------------------
if command -v flock >/dev/null 2>&1; then
    exec 9>"$work_dir/.lock"
    if ! flock -n 9; then
        say "Waiting for another nginx build using $work_dir"
        flock 9
    fi
fi
already_built && exit 0
: >"$log_file"

build_dir="$work_dir/build.$$"
tmp_out="$out_dir.tmp.$$"
cleanup() {
    rm -rf "$build_dir" "$tmp_out"
    rm -f "$downloads"/*.part."$$"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Leftovers of killed builds (never mistaken for results: they are not named OUT_DIR).
find "$work_dir" -maxdepth 1 -name 'build.*' -mmin +120 -exec rm -rf {} + 2>/dev/null || true
find "$out_parent" -maxdepth 1 -name "$(basename "$out_dir").tmp.*" -mmin +120 -exec rm -rf {} + 2>/dev/null || true
mkdir -p "$build_dir"

# --- fetching ---------------------------------------------------------------------------
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# fetch DEST_NAME SHA256 NAME... : make downloads/DEST_NAME a verified copy, trying every
# manifest row named NAME (in the order given, then manifest order) whose sha256 is SHA256.
fetch() {
    local dest_name=$1 want=$2 dest got i name url tmp rc
    shift 2
    dest="$downloads/$dest_name"
    if [[ -f $dest ]]; then
        got=$(sha_of "$dest")
        if [[ $got == "$want" ]]; then
            say "Using downloaded $dest_name (sha256 ${want:0:12}...)"
            return 0
        fi
        warn "Discarding $dest: sha256 $got, expected $want."
        rm -f "$dest"
    fi
    local -a failures=()
    for name in "$@"; do
        for i in "${!m_name[@]}"; do
            [[ ${m_name[i]} == "$name" && ${m_sha[i]} == "$want" ]] || continue
            url=${m_url[i]}
            tmp="$dest.part.$$"
            rm -f "$tmp"
            say "Fetching $dest_name from $url"
            rc=0
            curl -fsSL --retry 2 --connect-timeout 10 --max-time 600 -o "$tmp" "$url" 2>>"$log_file" || rc=$?
            if ((rc != 0)); then
                rm -f "$tmp"
                failures+=("$url: download failed (curl exit $rc)")
                say "  unreachable (curl exit $rc)"
                continue
            fi
            got=$(sha_of "$tmp")
            if [[ $got != "$want" ]]; then
                rm -f "$tmp"
                failures+=("$url: sha256 mismatch: got $got, expected $want")
                warn "sha256 mismatch for $dest_name from $url" "expected $want" "got      $got"
                continue
            fi
            mv -f "$tmp" "$dest"
            say "  verified sha256 ${want:0:12}..."
            return 0
        done
    done
    ((${#failures[@]})) || failures+=("the manifest $manifest lists no source for it")
    die "Could not fetch a verified copy of $dest_name (sha256 $want)." "${failures[@]}" \
        "Nothing was built. If the sources moved, update $manifest."
}

src_dir=
source_label=
if [[ $source_kind == debian ]]; then
    i=$(first_row '*.dsc' debian) || die "The manifest $manifest has no Debian .dsc row."
    dsc_name=${m_name[i]}
    debian_version=${m_version[i]}
    fetch "$dsc_name" "${m_sha[i]}" "$dsc_name"
    # The .orig tarball is the pristine upstream tarball: take it from nginx.org or Debian.
    i=$(first_row '*.orig.tar.*' debian) || die "The manifest $manifest has no Debian .orig tarball row."
    orig_name=${m_name[i]}
    [[ ${m_sha[i]} == "$upstream_sha" ]] ||
        die "The manifest's Debian $orig_name is not the upstream $upstream_name (sha256 differ)."
    fetch "$orig_name" "$upstream_sha" "$upstream_name" "$orig_name"
    i=$(first_row '*.debian.tar.*' debian) || die "The manifest $manifest has no Debian .debian.tar row."
    fetch "${m_name[i]}" "${m_sha[i]}" "${m_name[i]}"
    # The dsc must name exactly the files we verified (dpkg-source checks them against it too).
    for name in "$orig_name" "${m_name[i]}"; do
        grep -q " $(sha_of "$downloads/$name") [0-9]* $name\$" "$downloads/$dsc_name" ||
            die "$dsc_name does not list $name with the sha256 of the manifest."
    done
    say "Unpacking Debian source $debian_version and applying its patches"
    if ! dpkg-source --no-copy -x "$downloads/$dsc_name" "$build_dir/src" >>"$log_file" 2>&1; then
        tail -n 20 "$log_file" | sed "s/^/$INDENT/" >&2
        die "dpkg-source could not unpack $dsc_name." "The full log is $log_file."
    fi
    src_dir="$build_dir/src"
    patches=$(grep -c -v -e '^#' -e '^[[:space:]]*$' "$src_dir/debian/patches/series" 2>/dev/null || true)
    say "Applied ${patches:-0} Debian patches"
    source_label="debian-$debian_version"
else
    fetch "$upstream_name" "$upstream_sha" "$upstream_name" \
        "$(m=$(first_row '*.orig.tar.*' debian) && echo "${m_name[m]}")"
    say "Unpacking $upstream_name (no Debian patches)"
    mkdir -p "$build_dir/src"
    tar -xzf "$downloads/$upstream_name" -C "$build_dir/src" --strip-components=1
    src_dir="$build_dir/src"
    source_label=upstream
fi
[[ -x $src_dir/configure ]] || die "The unpacked source in $src_dir has no configure script."

# --- configure, compile, install --------------------------------------------------------
# -g0 cancels the -g that nginx's configure always adds: the binary is stripped anyway.
# Every compiled-in path is relative, so it resolves under the runtime's -p prefix; the
# runtime config sets pid, error_log, access_log and all *_temp_path explicitly anyway.
configure_args=(
    --prefix=/nonexistent
    --sbin-path=bin/nginx
    --modules-path=modules
    --conf-path=conf/nginx.conf
    --error-log-path=stderr
    --http-log-path=logs/access.log
    --pid-path=run/nginx.pid
    --lock-path=run/nginx.lock
    --http-client-body-temp-path=tmp/client_body
    --http-proxy-temp-path=tmp/proxy
    --http-uwsgi-temp-path=tmp/uwsgi
    --http-fastcgi-temp-path=tmp/fastcgi
    --http-scgi-temp-path=tmp/scgi
    --build="$source_label"
    --with-threads
    --with-pcre
    --with-pcre-jit
    --with-http_ssl_module
    --with-http_realip_module
    --with-http_gzip_static_module
    --with-http_stub_status_module
    --without-http_fastcgi_module
    --without-http_scgi_module
    --without-http_memcached_module
    "--with-cc-opt=-O2 -g0 -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wformat -Werror=format-security -fPIC"
    "--with-ld-opt=-Wl,-z,relro -Wl,-z,now -Wl,--as-needed -pie"
)

started=$SECONDS
fail_build() {
    printf '%s--- last lines of %s ---\n' "$INDENT" "$log_file" >&2
    tail -n 25 "$log_file" | sed "s/^/$INDENT/" >&2
    die "$1" "The full log is $log_file."
}
# A make above us (mk/nginx.mk) must not pass its flags or jobserver down to nginx's Makefile.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
say "Configuring nginx $nginx_version ($source_label)"
(cd "$src_dir" && ./configure "${configure_args[@]}") >>"$log_file" 2>&1 || fail_build "nginx's configure failed."
jobs=$(nproc 2>/dev/null || echo 2)
say "Compiling with $jobs jobs (log: $log_file)"
make -C "$src_dir" -j"$jobs" >>"$log_file" 2>&1 || fail_build "Compiling nginx failed."

mkdir -p "$tmp_out/bin" "$tmp_out/conf"
install -m 0755 "$src_dir/objs/nginx" "$tmp_out/bin/nginx"
strip --strip-unneeded "$tmp_out/bin/nginx"
install -m 0644 "$src_dir/conf/mime.types" "$src_dir/conf/uwsgi_params" "$tmp_out/conf/"
install -m 0644 "$src_dir/LICENSE" "$tmp_out/LICENSE"
"$tmp_out/bin/nginx" -V >>"$log_file" 2>&1 || fail_build "The built nginx does not run."
printf '%s %s %s\n' "$nginx_version" "$source_label" "$recipe_hash" >"$tmp_out/VERSION"

# Publish: one rename. mv -T never moves into an existing directory; if a concurrent build
# published first, keep its result.
if ! mv -T "$tmp_out" "$out_dir" 2>/dev/null; then
    [[ -f $out_dir/VERSION ]] || die "Could not move the build into $out_dir."
    say "Another build published $out_dir first; keeping it"
fi
size=$(du -k "$out_dir/bin/nginx" | cut -f1)
say "Built nginx $nginx_version ($source_label, recipe $recipe_hash) in $((SECONDS - started)) s: bin/nginx ${size} KiB"
