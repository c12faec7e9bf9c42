#!/usr/bin/env bash
# `make lint`: render config/nginx.conf.template with sample values, through the renderer the
# web process uses (dcruntime.render --sample: PORT, NGINX_WORKERS and the limits it would
# compute itself), into a throw-away HOME and run directory laid out as at run time, then check
# it with the vendored nginx's `nginx -t`, as bin/nginx_start does at every start.
#
#   tests/nginx_lint.sh VENDORED_NGINX_DIR      (PYTHON3 names the python3 to run; default python3)
set -euo pipefail
shopt -s inherit_errexit

bp="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
nginx_dir="${1:?usage: tests/nginx_lint.sh VENDORED_NGINX_DIR}"
template="${NGINX_TEMPLATE:-${bp}/config/nginx.conf.template}"  # another template: for trying this script
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

mkdir -p "${work}/home/config" "${work}/run/app"
cp "${nginx_dir}/conf/mime.types" "${nginx_dir}/conf/uwsgi_params" "${work}/home/config/"
: >"${work}/run/nginx-defaults.conf"
HOME="${work}/home" DC_RUN_DIR="${work}/run" TMPDIR="${work}" PYTHONPATH="${bp}/lib" PYTHONDONTWRITEBYTECODE=1 \
	"${PYTHON3:-python3}" -m dcruntime.render --sample "${template}" "${work}/run/nginx.conf"

args=(-p "${work}/run/" -e stderr -c "${work}/run/nginx.conf")
# As root, nginx's workers would run as nobody (dcruntime.web.privileges).
if [[ "$(id -u)" == 0 ]] && id nobody >/dev/null 2>&1; then
	args+=(-g "user nobody $(id -gn nobody);")
fi
if ! output="$("${nginx_dir}/bin/nginx" -t -q "${args[@]}" 2>&1)"; then
	# Rendering keeps every line where it was: name the template instead of the rendered copy.
	printf '%s\n' "${output//"${work}/run/nginx.conf"/"${template}"}" >&2
	printf ' !     Error: %s is rejected by "nginx -t" (rendered with sample values).\n' "${template}" >&2
	printf ' !     Fix the directive at the line named above.\n' >&2
	exit 1
fi
echo "nginx -t: config/nginx.conf.template, rendered with sample values, is valid"
