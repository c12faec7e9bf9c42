# The buildpack as a tarball a platform can use as its buildpack URL (Dokku/herokuish, Heroku):
# everything bin/compile needs, the vendored nginx for this machine's platform (so compile
# never builds nginx there), VERSION and CHANGELOG.md. Files sit at the top of the archive, as
# platforms expect (`bin/compile`, not `name/bin/compile`). Included by the Makefile; uses BP,
# and nginx.mk's nginx-vendor target and NGINX_VENDOR (in the recipe only, so this file may be
# included before or after nginx.mk).
#
#   make dist [DIST_DIR=dist]   DIST_DIR/$(BUILDPACK_NAME)-$(BUILDPACK_VERSION).tgz (+ .sha256)
#
# The archive is reproducible: names sorted, owner root, modes normalised, mtimes set to
# SOURCE_DATE_EPOCH (default: the last commit's time), gzip without a timestamp.

BUILDPACK_NAME := buildpack-python-dotcloud
# The version, from VERSION: make dist names the archive after it, the build log prints it.
BUILDPACK_VERSION := $(strip $(file <$(BP)/VERSION))
ifeq ($(BUILDPACK_VERSION),)
$(error $(BP)/VERSION is missing or empty)
endif
DIST_DIR ?= $(BP)/dist
DIST_TGZ = $(DIST_DIR)/$(BUILDPACK_NAME)-$(BUILDPACK_VERSION).tgz
SOURCE_DATE_EPOCH ?= $(shell git -C '$(BP)' log -1 --format=%ct 2>/dev/null || echo 0)
# What compile reads, relative to BP (the vendored nginx is added by the recipe).
DIST_PATHS := Makefile VERSION CHANGELOG.md README.md bin config lib mk \
  $(patsubst $(BP)/%,%,$(wildcard $(BP)/vendor/*/manifest.tsv $(BP)/vendor/*/recipe* $(BP)/vendor/*/README.md))

.PHONY: dist
dist: nginx-vendor
	@stage="$$(mktemp -d)"; trap 'rm -rf "$$stage"' EXIT; \
	tar -C '$(BP)' --create --exclude=__pycache__ --exclude='*.pyc' --exclude='*.tmp.*' \
	  $(DIST_PATHS) '$(patsubst $(BP)/%,%,$(NGINX_VENDOR))' | tar -C "$$stage" --extract; \
	mkdir -p '$(DIST_DIR)'; \
	tar -C "$$stage" --create --sort=name --mtime='@$(SOURCE_DATE_EPOCH)' --owner=0 --group=0 \
	  --numeric-owner --mode='u+rw,go+r,go-w,a+X' . | gzip -n -9 > '$(DIST_TGZ).tmp'; \
	mv -f '$(DIST_TGZ).tmp' '$(DIST_TGZ)'; \
	(cd '$(DIST_DIR)' && sha256sum '$(notdir $(DIST_TGZ))' > '$(notdir $(DIST_TGZ)).sha256'); \
	echo "-----> $(DIST_TGZ) ($$(du -h '$(DIST_TGZ)' | cut -f1), nginx $(NGINX_VERSION) for $(PLATFORM))"
