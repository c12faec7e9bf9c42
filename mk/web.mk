# The web stack's slug steps (issue 3): the runtime scripts, config templates and the dcruntime
# package into the slug (dcbuild.web configs), dotCloud's approot links (dcbuild.web approot),
# and the compile-time checks of the app's own config files (dcbuild.checks). Included by the
# Makefile; uses BP, BUILD_DIR, STATE, LAYERS, PY_VERSION, USER_LAYER, the keys the build's
# prepare step writes (CONFIGS_KEY, APPROOT_KEY, CHECKS_KEY, DCRUNTIME_HASH) and nginx.mk's
# NGINX_KEY: uwsgi_params and mime.types come from the nginx layer, so it goes first.
#
#   make checks BUILD_DIR=...
#   make configs BUILD_DIR=...
#   make approot BUILD_DIR=...
#
# Each step leaves a stamp named after the hash of what it copies, runs or checks (plus the nginx
# key, or the approot), so a warm `make -q` has nothing to do and a changed input redoes the step.
# The Makefile runs the steps: its grouped target of the slug's stamps (dcbuild/slug.py), so
# `make configs` runs whichever of the slug's steps are missing, in their order.

.PHONY: checks configs approot

ifneq ($(BUILD_DIR),)
ifndef NGINX_KEY
$(error mk/web.mk needs mk/nginx.mk (NGINX_KEY, NGINX_STAMP) included before it)
endif
CHECKS_STAMP := $(STATE)/checks-$(CHECKS_KEY)-$(NGINX_KEY)
CONFIGS_STAMP := $(STATE)/configs-$(CONFIGS_KEY)-$(NGINX_KEY)
APPROOT_STAMP := $(STATE)/approot-$(APPROOT_KEY)
checks: | $(CHECKS_STAMP)
configs: | $(CONFIGS_STAMP)
approot: | $(APPROOT_STAMP)

# The dcruntime package with its bytecode (checked-hash, so valid whatever the files' mtimes),
# compiled by the environment's Python once per dcruntime source and Python version: the web
# process imports it at every start, and would compile it there otherwise.
RUNTIME_LIB := $(LAYERS)/dcruntime-$(PY_VERSION)-$(DCRUNTIME_HASH)
$(RUNTIME_LIB): | $(USER_LAYER)
	@$(DC).slug bytecode '$@' --python '$(USER_LAYER)/python/bin/python3'
endif
