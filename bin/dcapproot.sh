#!/usr/bin/env bash
# dotCloud's links in the app directory: `code` -> the whole tree (.), `current` -> the
# approot. Usage: dcapproot.sh [APP_DIR] (default: $HOME).
# The approot is $APPROOT if set, else where an existing `current` link points, else `.`.
# Links are relative, so the slug can move; when they are already right nothing is written
# (a read-only app directory is fine).
set -euo pipefail
shopt -s inherit_errexit

die() {
	printf 'dcapproot.sh: error: %s\n' "$*" >&2
	exit 1
}

app_dir="${1:-${HOME:?}}"
cd "${app_dir}" || die "cannot enter ${app_dir}"

if [[ -n "${APPROOT:-}" ]]; then
	approot="${APPROOT}"
elif [[ -L current ]]; then
	approot="$(readlink current)"
else
	approot=.
fi
while [[ "${approot}" == */ && "${approot}" != / ]]; do approot="${approot%/}"; done
approot="${approot#./}"
[[ -n "${approot}" ]] || approot=.

case "/${approot}/" in
*/../* | //*) die "approot '${approot}' must be a directory inside the app" ;;
esac
[[ -d "${approot}" ]] || die "approot '${approot}' is not a directory in ${app_dir}"

# link NAME TARGET: make NAME a symlink to TARGET, unless it already is one.
link() {
	if [[ -L "$1" ]]; then
		[[ "$(readlink "$1")" == "$2" ]] || ln -sfn "$2" "$1"
	elif [[ -e "$1" ]]; then
		return 1
	else
		ln -s "$2" "$1"
	fi
}

link code . || printf 'dcapproot.sh: warning: the app has its own %s; not linking it to the app root\n' code >&2
link current "${approot}" || die "the app has its own 'current', which dotCloud used for the approot link: rename it"
