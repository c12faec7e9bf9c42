# Written by buildpack-python-dotcloud. Platforms source this before every process
# (herokuish under `set -eo pipefail`): no line here may fail.
export PATH="${HOME}/.dotcloud/python/bin:${HOME}/.dotcloud/nginx/bin:${HOME}/bin:${PATH:-/usr/local/bin:/usr/bin:/bin}"
export PYTHONUNBUFFERED="${PYTHONUNBUFFERED:-1}"
export LANG="${LANG:-C.UTF-8}"
