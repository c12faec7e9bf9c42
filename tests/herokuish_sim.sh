#!/usr/bin/env bash
# herokuish's build and start sequence, reproduced for the contract tests (tests/test_contract.py).
#
#   herokuish_sim.sh build          detect, compile, release, move the build into APP_PATH
#   herokuish_sim.sh start TYPE     run the Procfile's TYPE as herokuish's /start does
#
# Written from herokuish's source (gliderlabs/herokuish: include/herokuish.bash, buildpack.bash,
# procfile.bash, herokuish.go), not copied from it. What it does, in herokuish's order:
#   build: cd /; the app (IMPORT_PATH, if not empty, replaces APP_PATH) is copied to BUILD_PATH;
#     APP_DIR = HOME = APP_PATH, STACK (default heroku-24), REQUEST_ID, CURL_* exported; APP_PATH,
#     BUILD_PATH, CACHE_PATH, ENV_PATH and BUILDPACK_PATH chowned to the unprivileged user; the
#     app's .env (buildstep compatibility) evaluated; every BUILDPACK_PATH/*/bin/detect run as that
#     user with cwd / (output discarded), the first that passes run again for its name; then with
#     cwd = BUILD_PATH, as that user: bin/compile BUILD CACHE ENV (its stdout through herokuish's
#     `indent`, which reads with `read -r`: the last line is lost without a trailing newline and
#     leading blanks are stripped), bin/release BUILD CACHE > BUILD/.release; config_vars from it
#     appended to .profile.d/00_config_vars.sh (values formatted as Go's %s formats them: a bare
#     5 becomes %!s(int=5)); APP_PATH emptied and the build moved into it; a Procfile written
#     from default_process_types when the app has none.
#   start: HOME = APP_PATH; cd APP_PATH; every ENV_PATH file exported; /etc/profile.d/*.sh,
#     APP_PATH/.profile.d/*.sh and APP_PATH/.profile sourced by this (root) shell under
#     `set -eo pipefail`; then `exec setuidgid USER $(eval echo "$cmd")`.
#
# Paths and user come from the environment, as for herokuish: APP_PATH (/app), ENV_PATH
# (/tmp/env), BUILD_PATH (/tmp/build), CACHE_PATH (/tmp/cache), IMPORT_PATH (/tmp/app),
# BUILDPACK_PATH (/tmp/buildpacks), USER (the unprivileged user; `nobody` gets group nogroup).
#
# Where this differs from herokuish, and why:
#   - setuidgid (daemontools) is replaced by `setpriv --reuid --regid --clear-groups`, which does
#     the same (the user's uid and primary gid, no supplementary groups, environment untouched).
#     Not root: commands run as the current user.
#   - No user is created (herokuish's randomize-unprivileged) and none is modified (its
#     `usermod --home`): this runs on shared machines. Set USER (e.g. nobody) when root.
#   - A buildpack in BUILDPACK_PATH that is not writable (a read-only mount) is not chowned:
#     herokuish would fail there; other platforms mount buildpacks read-only and root-owned.
#   - HEROKUISH_SIM_ETC_PROFILE_D replaces /etc/profile.d (the build machine's own scripts are
#     not the platform image's); BUILDPACK_URL (fetching a buildpack) is not supported.
#   - yaml-get / yaml-keys (Go in herokuish) are a few lines of Python: PyYAML when the python3
#     on PATH has it, else a parser for the block mappings buildpacks print.
set -eo pipefail
[[ -n "${TRACE:-}" ]] && set -x

app_path="${APP_PATH:-/app}"
env_path="${ENV_PATH:-/tmp/env}"
build_path="${BUILD_PATH:-/tmp/build}"
cache_path="${CACHE_PATH:-/tmp/cache}"
import_path="${IMPORT_PATH:-/tmp/app}"
buildpack_path="${BUILDPACK_PATH:-/tmp/buildpacks}"
etc_profile_d="${HEROKUISH_SIM_ETC_PROFILE_D-/etc/profile.d}"
unprivileged_user="${USER:-}"
unprivileged_group="${unprivileged_user/nobody/nogroup}"
selected_path=""
selected_name=""

title() {
	echo $'\e[1G----->' "$@"
}

# herokuish's indent: `read -r` with the default IFS (leading and trailing blanks go) and no
# `|| [[ -n $line ]]` (a last line without a newline is dropped).
indent() {
	local line
	while read -r line; do
		if [[ "${line}" == --* || "${line}" == ==* ]]; then
			echo $'\e[1G'"${line}"
		else
			echo $'\e[1G      ' "${line}"
		fi
	done
}

unprivileged() {
	if [[ "${EUID}" -ne 0 ]]; then
		"$@"
		return
	fi
	local gid
	gid="$(id -g "${unprivileged_user}")"
	setpriv --reuid="${unprivileged_user}" --regid="${gid}" --clear-groups "$@"
}

# yaml-keys / yaml-get KEY...: herokuish's Go helpers (gopkg.in/yaml.v2, fmt's %s), reading
# the YAML on stdin (so the program is an argument, not a here-document on stdin).
yaml_helper() {
	python3 -c "${yaml_program}" "$@"
}

read -r -d '' yaml_program <<'PY' || true
import re, sys

def go_s(value):
    """fmt.Sprintf("%s", value) for what yaml.v2 decodes."""
    if isinstance(value, str):
        return value
    if value is None:
        return "%!s(<nil>)"
    if isinstance(value, bool):
        return f"%!s(bool={'true' if value else 'false'})"
    if isinstance(value, int):
        return f"%!s(int={value})"
    if isinstance(value, float):
        return f"%!s(float64={value!r})"
    if isinstance(value, list):
        return "[" + " ".join(go_s(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_s(k)}:{go_s(v)}" for k, v in value.items()) + "]"
    return str(value)

def scalar(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if re.fullmatch(r"[-+]?(0|[1-9][0-9]*)", text):
        return int(text)
    if re.fullmatch(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", text):
        return float(text)
    if text.lower() in ("true", "yes", "on", "false", "no", "off"):
        return text.lower() in ("true", "yes", "on")
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    return text

def small_yaml(text):
    """Block mappings of scalars, nested by indentation: what bin/release prints."""
    root = {}
    stack = [(-1, root)]
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#") or raw.strip() in ("---", "..."):
            continue
        depth = len(raw) - len(raw.lstrip(" "))
        key, _, rest = raw.strip().partition(":")
        while stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1]
        if rest.strip():
            parent[scalar(key)] = scalar(rest)
        else:
            parent[scalar(key)] = {}
            stack.append((depth, parent[scalar(key)]))
    return {k: (v if v != {} else None) for k, v in root.items()}

text = sys.stdin.read()
try:
    import yaml
    data = yaml.safe_load(text)
except ImportError:
    data = small_yaml(text)
except yaml.YAMLError as exc:
    sys.exit(f"yaml: {exc}")
mode, keys = sys.argv[1], sys.argv[2:]
for key in keys:
    if data is None:
        break
    data = data.get(key) if isinstance(data, dict) else None
if mode == "keys":
    if isinstance(data, dict):
        for key in data:
            print(go_s(key))
elif isinstance(data, str):
    print(data)
elif isinstance(data, dict):
    for key, value in data.items():
        print(f"{go_s(key)}={go_s(value)}")
elif isinstance(data, list):
    for value in data:
        print(go_s(value))
PY

yaml_keys() { yaml_helper keys "$@"; }
yaml_get() { yaml_helper get "$@"; }

# herokuish's Procfile reader: the text after the first colon of the first line whose key is TYPE.
procfile_get() {
	local wanted="$1" line key
	while read -r line || [[ -n "${line}" ]]; do
		[[ "${line}" =~ ^#.* ]] && continue
		key="${line%%:*}"
		if [[ "${key}" == "${wanted}" ]]; then
			echo "${line#*:}"
			break
		fi
	done
}

procfile_keys() {
	local line
	while read -r line || [[ -n "${line}" ]]; do
		[[ "${line}" =~ ^#.* ]] && continue
		[[ "${line}" == *:* ]] || continue
		echo "${line%%:*}"
	done
}

chown_tree() {
	find "$1" \( \! -user "${unprivileged_user}" -o \! -group "${unprivileged_group}" \) -print0 \
		| xargs -0 --no-run-if-empty chown --no-dereference "${unprivileged_user}:${unprivileged_group}"
}

# The buildstep .env file: KEY=value lines, values quoted unless they already are, then eval'd.
envfile_exports() {
	local line key value
	while read -r line || [[ -n "${line}" ]]; do
		[[ "${line}" =~ ^#.* || -z "${line}" ]] && continue
		key="${line%%=*}"
		key="${key#*export }"
		value="${line#*=}"
		case "${value}" in
		\'* | \"*) ;;
		*) value="\"${value}\"" ;;
		esac
		echo "export ${key}=${value}"
	done
}

ensure_paths() {
	mkdir -p "${app_path}" "${env_path}" "${build_path}" "${cache_path}" "${buildpack_path}"
}

build_setup() {
	if [[ -d "${import_path}" && -n "$(ls -A "${import_path}")" ]]; then
		rm -rf "${app_path}" && cp -r "${import_path}" "${app_path}"
	fi
	export APP_DIR="${app_path}"
	export HOME="${app_path}"
	export REQUEST_ID="build-${RANDOM}"
	export STACK="${STACK:-heroku-24}"
	cp -r "${app_path}/." "${build_path}"
	if [[ "${EUID}" -eq 0 ]]; then
		chown "${unprivileged_user}:${unprivileged_group}" "${HOME}"
		local dir
		for dir in "${app_path}" "${build_path}" "${cache_path}" "${env_path}"; do
			chown_tree "${dir}"
		done
		chown "${unprivileged_user}:${unprivileged_group}" "${buildpack_path}"
		for dir in "${buildpack_path}"/*; do
			if [[ -w "${dir}" ]]; then # not a read-only mount
				chown_tree "${dir}"
			fi
		done
	fi
	export CURL_CONNECT_TIMEOUT="30"
	export CURL_TIMEOUT="180"
	if [[ -f "${app_path}/.env" ]]; then
		eval "$(envfile_exports <"${app_path}/.env")"
	fi
}

select_buildpack() {
	local buildpack valid=()
	for buildpack in "${buildpack_path}"/*; do
		unprivileged "${buildpack}/bin/detect" "${build_path}" &>/dev/null && valid+=("${buildpack}")
	done
	if [[ ${#valid[@]} -gt 1 ]]; then
		title "Warning: Multiple default buildpacks reported the ability to handle this app. The first buildpack in the list below will be used."
		echo "Detected buildpacks: ${valid[*]}" | indent
	fi
	if [[ ${#valid[@]} -gt 0 ]]; then
		selected_path="${valid[0]}"
		selected_name="$(unprivileged "${selected_path}/bin/detect" "${build_path}")"
	fi
	if [[ -n "${selected_path}" && -n "${selected_name}" ]]; then
		title "${selected_name} app detected"
	else
		title "Unable to select a buildpack"
		exit 1
	fi
}

build_execute() {
	select_buildpack
	cd "${build_path}"
	unprivileged "${selected_path}/bin/compile" "${build_path}" "${cache_path}" "${env_path}"
	if [[ -f "${selected_path}/bin/release" ]]; then
		unprivileged "${selected_path}/bin/release" "${build_path}" "${cache_path}" \
			| unprivileged tee "${build_path}/.release" >/dev/null
	fi
	if [[ -f "${build_path}/.release" ]]; then
		local config_vars var
		config_vars="$(yaml_get config_vars <"${build_path}/.release")"
		unprivileged mkdir -p "${build_path}/.profile.d"
		unprivileged touch "${build_path}/.profile.d/00_config_vars.sh"
		if [[ -n "${config_vars}" ]]; then
			while IFS= read -r var; do
				# KEY=value -> export KEY="value" (herokuish's sed: the first = opens the quote).
				echo "export ${var%%=*}=\"${var#*=}\"" \
					| unprivileged tee -a "${build_path}/.profile.d/00_config_vars.sh" >/dev/null
			done <<<"${config_vars}"
		fi
	fi
	cd - >/dev/null
	shopt -s dotglob nullglob
	rm -rf "${app_path:?}"/*
	mv "${build_path}"/* "${app_path}"
	shopt -u dotglob nullglob
}

procfile_types() {
	title "Discovering process types"
	if [[ -f "${app_path}/Procfile" ]]; then
		local types
		types="$(procfile_keys <"${app_path}/Procfile" | sort | uniq | xargs echo)"
		echo "Procfile declares types -> ${types// /, }"
		return
	fi
	if [[ -s "${app_path}/.release" ]]; then
		local default_types type
		default_types="$(yaml_keys default_process_types <"${app_path}/.release" | xargs echo)"
		[[ -n "${default_types}" ]] && echo "Default types for ${selected_name} -> ${default_types// /, }"
		for type in ${default_types}; do
			echo "${type}: $(yaml_get default_process_types "${type}" <"${app_path}/.release")" >>"${app_path}/Procfile"
		done
		return
	fi
	echo "No process types found"
}

build() {
	ensure_paths
	if [[ "${EUID}" -eq 0 && -z "${unprivileged_user}" ]]; then
		echo "herokuish_sim: set USER to an existing unprivileged user (herokuish would create one)" >&2
		exit 2
	fi
	[[ -n "${unprivileged_user}" ]] || unprivileged_user="$(id -un)" unprivileged_group="$(id -gn)"
	build_setup >/dev/null
	build_execute | indent
	procfile_types | indent
}

load_env() {
	local file
	if [[ -d "${env_path}" ]]; then
		shopt -s nullglob
		for file in "${env_path}"/*; do
			export "$(basename "${file}")=$(cat "${file}")"
		done
	fi
}

load_profile() {
	local file
	shopt -s nullglob
	if [[ -n "${etc_profile_d}" ]]; then
		for file in "${etc_profile_d}"/*.sh; do
			# shellcheck disable=SC1090 # the platform's own scripts
			source "${file}"
		done
	fi
	mkdir -p "${app_path}/.profile.d"
	for file in "${app_path}"/.profile.d/*.sh; do
		# shellcheck disable=SC1090 # the buildpack's and the app's scripts
		source "${file}"
	done
	if [[ -s "${app_path}/.profile" ]]; then
		# shellcheck disable=SC1091 # the app's own
		source "${app_path}/.profile"
	fi
	shopt -u nullglob
	hash -r
}

start() {
	local type="${1:?usage: herokuish_sim.sh start PROCESS_TYPE}" cmd
	cmd="$(procfile_get "${type}" <"${app_path}/Procfile")"
	if [[ -z "${cmd}" ]]; then
		echo "Proc entrypoint ${type} does not exist. Please check your Procfile"
		exit 1
	fi
	if [[ -z "${unprivileged_user}" ]]; then
		unprivileged_user="$(stat -c %U "${app_path}")"
		unprivileged_group="${unprivileged_user/nobody/nogroup}"
	fi
	export HOME="${app_path}"
	cd "${app_path}"
	load_env
	load_profile
	# As herokuish: exec setuidgid USER $(eval echo "$cmd"), the substitution unquoted: its output
	# is split into words and globbed, so only one executable with plain arguments survives.
	if [[ "${EUID}" -eq 0 ]]; then
		# shellcheck disable=SC2046 # splitting intended
		exec setpriv --reuid="${unprivileged_user}" --regid="$(id -g "${unprivileged_user}")" --clear-groups \
			$(eval echo "${cmd}")
	fi
	# shellcheck disable=SC2046 # splitting intended
	exec $(eval echo "${cmd}")
}

cd /
case "${1:-}" in
build) build ;;
start) start "${2:-}" ;;
*)
	echo "usage: herokuish_sim.sh build | start PROCESS_TYPE" >&2
	exit 2
	;;
esac
