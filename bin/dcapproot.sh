#!/usr/bin/env bash
# dotCloud's home directory as the slug has it: APP_DIR/.dotcloud/home/ holds, side by side as
# /home/dotcloud did, `code` -> the whole tree (../..), `current` -> code/<approot>, `env` ->
# the Python environment, and environment.json/.yml/.yaml (-> the files the web process writes
# into APP_DIR). Nothing is added to the app's own directory, which is on uWSGI's sys.path when
# the approot is `.`: a `code -> .` link there, with an __init__.py at the top, shadowed the
# standard library's `code` module. Links that older versions of this script made in APP_DIR
# (`code -> .`, `current -> <approot>`) are removed.
# Usage: dcapproot.sh [APP_DIR] (default: $HOME).
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
home=.dotcloud/home

if [[ -n "${APPROOT:-}" ]]; then
	approot="${APPROOT}"
elif [[ -L "${home}/current" ]]; then
	approot="$(readlink "${home}/current")"
	approot="${approot#code}"
	approot="${approot#/}"
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
	else
		rm -rf "$1"
		ln -s "$2" "$1"
	fi
}

# The links of older versions, in the app's own directory: only when they are exactly those.
if [[ -L code && "$(readlink code)" == . ]]; then rm -f code; fi
if [[ -L current && "$(readlink current)" == "${approot}" ]]; then rm -f current; fi

[[ -d "${home}" ]] || mkdir -p "${home}"
link "${home}/code" ../..
if [[ "${approot}" == . ]]; then
	link "${home}/current" code
else
	link "${home}/current" "code/${approot}"
fi
link "${home}/env" ../python
for name in environment.json environment.yml environment.yaml; do
	link "${home}/${name}" "../../${name}"
done
