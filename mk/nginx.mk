# nginx, the vendored-binary layer. Included by the buildpack's Makefile, which defines
# BP, CACHE_DIR, BUILD_DIR and PLATFORM before `include mk/nginx.mk`.
#
# Identity is by content, never by mtime: NGINX_KEY ends in the first 12 hex digits of
# sha256(manifest.tsv + recipe.sh), every result lives in a directory named after the key, and
# rules depend on those directories only by existence. Every directory is published by one
# rename (the recipe builds OUT.tmp.PID, then mv), so a killed build never looks finished.
#
#   make vendor                  build $(NGINX_VENDOR) if missing (also: make nginx-vendor)
#   make nginx BUILD_DIR=...     copy bin/nginx + conf/ into $(BUILD_DIR)/.dotcloud/nginx,
#                                from vendor/, else the cache, else a build into the cache
#                                (a copy, not hard links: the slug may be changed in place)
#   make nginx-key               print NGINX_KEY
#
# NGINX_SOURCE=upstream (environment or command line) builds the unpatched nginx.org tarball
# instead of Debian's patched source; it gets its own key (suffix -upstream).

NGINX_SOURCE ?= debian
NGINX_DIR := $(BP)/vendor/nginx
NGINX_MANIFEST := $(NGINX_DIR)/manifest.tsv
NGINX_RECIPE := $(NGINX_DIR)/recipe.sh
NGINX_VERSION := $(shell awk -F'\t' '$$3 == "upstream" { print $$2; exit }' '$(NGINX_MANIFEST)' 2>/dev/null)
NGINX_HASH := $(shell cat '$(NGINX_MANIFEST)' '$(NGINX_RECIPE)' 2>/dev/null | sha256sum | cut -c1-12)
ifeq ($(NGINX_VERSION),)
$(error Cannot read the nginx version from $(NGINX_MANIFEST))
endif
ifeq ($(wildcard $(NGINX_RECIPE)),)
$(error Missing $(NGINX_RECIPE))
endif
ifeq ($(NGINX_SOURCE),upstream)
NGINX_KEY := nginx-$(NGINX_VERSION)-$(PLATFORM)-$(NGINX_HASH)-upstream
else ifeq ($(NGINX_SOURCE),debian)
NGINX_KEY := nginx-$(NGINX_VERSION)-$(PLATFORM)-$(NGINX_HASH)
else
$(error NGINX_SOURCE must be debian or upstream, not '$(NGINX_SOURCE)')
endif

NGINX_VENDOR := $(NGINX_DIR)/$(NGINX_KEY)
NGINX_CACHE_ROOT := $(CACHE_DIR)/python-dotcloud/nginx
NGINX_CACHE := $(NGINX_CACHE_ROOT)/$(NGINX_KEY)
# Downloads (verified against the manifest on every use) and the last build log.
NGINX_WORK := $(NGINX_CACHE_ROOT)/work
NGINX_SLUG := $(BUILD_DIR)/.dotcloud/nginx
NGINX_STAMP := $(BUILD_DIR)/.dotcloud/state/$(NGINX_KEY)
NGINX_RUN_RECIPE := NGINX_SOURCE='$(NGINX_SOURCE)' bash '$(NGINX_RECIPE)'

.PHONY: vendor nginx-vendor nginx nginx-key

vendor: nginx-vendor
nginx-vendor: | $(NGINX_VENDOR)

$(NGINX_VENDOR):
	@echo '-----> Building nginx $(NGINX_VERSION) ($(NGINX_KEY)) into vendor/'
	@$(NGINX_RUN_RECIPE) '$@' '$(NGINX_WORK)'

nginx-key:
	@echo '$(NGINX_KEY)'

# The stamp says "the slug holds this key's nginx". If the slug's binary went missing, the
# stamp is not trusted: marking it phony makes the rule run again.
ifneq ($(BUILD_DIR),)
ifeq ($(wildcard $(NGINX_SLUG)/bin/nginx),)
.PHONY: $(NGINX_STAMP)
endif
endif

nginx: $(NGINX_STAMP)

$(NGINX_STAMP):
	$(if $(BUILD_DIR),,$(error BUILD_DIR is not set: make nginx needs the app directory))
	@if [[ -f '$(NGINX_VENDOR)/VERSION' ]]; then \
	    src='$(NGINX_VENDOR)'; \
	    echo '-----> Using vendored nginx $(NGINX_VERSION)'; \
	elif [[ -f '$(NGINX_CACHE)/VERSION' ]]; then \
	    src='$(NGINX_CACHE)'; \
	    echo '-----> Using cached nginx $(NGINX_VERSION)'; \
	else \
	    src='$(NGINX_CACHE)'; \
	    echo '-----> Building nginx $(NGINX_VERSION)'; \
	    $(NGINX_RUN_RECIPE) "$$src" '$(NGINX_WORK)'; \
	    find '$(NGINX_CACHE_ROOT)' -mindepth 1 -maxdepth 1 -name 'nginx-*' \
	        ! -name '$(NGINX_KEY)' ! -name '*.tmp.*' -exec rm -rf {} + ; \
	fi; \
	echo "       $$(cat "$$src/VERSION") -> .dotcloud/nginx"; \
	tmp='$(NGINX_SLUG).tmp.'$$$$; \
	rm -rf "$$tmp"; \
	mkdir -p '$(dir $(NGINX_SLUG))' '$(dir $(NGINX_STAMP))'; \
	cp -a "$$src" "$$tmp"; \
	rm -rf '$(NGINX_SLUG)'; \
	mv -T "$$tmp" '$(NGINX_SLUG)'; \
	rm -f '$(dir $(NGINX_STAMP))'nginx-*; \
	echo "$$(cat '$(NGINX_SLUG)/VERSION')" > '$@.tmp'; \
	mv -f '$@.tmp' '$@'
