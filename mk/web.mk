# The web stack's slug layer (issue 3): the runtime scripts, config templates and the dcruntime
# package into the slug (dcbuild.web configs), then dotCloud's approot links (dcbuild.web
# approot). Included by the Makefile; uses BP, BUILD_DIR, STATE, DC (`$(DC).web` runs the
# dcbuild.web module), APPROOT (exported by the build plan) and nginx.mk's NGINX_STAMP and
# NGINX_KEY: uwsgi_params and mime.types come from the nginx layer, so it goes first.
#
#   make configs BUILD_DIR=...
#   make approot BUILD_DIR=...
#
# Each step leaves a stamp named after the hash of what it copies or runs (plus the nginx key,
# or the approot), so a warm `make -q` has nothing to do and a changed input redoes the step.

.PHONY: configs approot

ifneq ($(BUILD_DIR),)
ifndef NGINX_KEY
$(error mk/web.mk needs mk/nginx.mk (NGINX_KEY, NGINX_STAMP) included before it)
endif
WEB_FILES := $(addprefix $(BP)/,bin/dcweb bin/nginx_start bin/uwsgi_start bin/dcapproot.sh \
  config/nginx.conf.template config/supervisord.conf lib/dcbuild/web.py) \
  $(sort $(wildcard $(BP)/lib/dcruntime/*.py))
WEB_HASH := $(shell cat $(WEB_FILES) | sha256sum | cut -c1-12)
APPROOT_HASH := $(shell { printf '%s\n' '$(APPROOT)'; cat '$(BP)/bin/dcapproot.sh' '$(BP)/lib/dcbuild/web.py'; } \
  | sha256sum | cut -c1-12)

configs: | $(STATE)/configs-$(WEB_HASH)-$(NGINX_KEY)
$(STATE)/configs-$(WEB_HASH)-$(NGINX_KEY): | $(NGINX_STAMP) userreqs
	@$(DC).web configs '$(BUILD_DIR)'
	@# Bytecode for the boot-time code: every dyno start would compile it otherwise (~30 ms).
	@'$(BUILD_DIR)/.dotcloud/python/bin/python3' -I -m compileall -q --invalidation-mode checked-hash \
	  '$(BUILD_DIR)/.dotcloud/lib' >/dev/null
	@mkdir -p '$(STATE)' && rm -f '$(STATE)'/configs-* && touch '$@'

approot: | $(STATE)/approot-$(APPROOT_HASH)
$(STATE)/approot-$(APPROOT_HASH):
	@$(DC).web approot '$(BUILD_DIR)'
	@mkdir -p '$(STATE)' && rm -f '$(STATE)'/approot-* && touch '$@'
endif
