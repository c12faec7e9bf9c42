# buildpack-python-dotcloud: the build as a make DAG.
#
#   make compile BUILD_DIR=/path/to/app [CACHE_DIR=...] [ENV_DIR=...]   (what bin/compile runs)
#   make report APP=path/to/app [OUT=file]   (the migration report, before the first deploy)
#   make python-3.13.0 | vendor | test | lint | serve | bench | soak
#
# Every expensive step keeps its result in CACHE_DIR under a name that says what it holds
# (Python version + platform, hashes of the requirement files), published by rename. Targets
# depend on those names order-only, never on the mtimes of checked-out files.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.SECONDARY:
.SUFFIXES:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules --no-print-directory --silent
.DEFAULT_GOAL := help

BP := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
BUILD_DIR ?=
CACHE_DIR ?= $(BP)/cache
ENV_DIR ?=
# 1 (bin/compile): start the environment's copy into the slug at parse time (see prepare below).
DC_PRECOPY ?=
# The buildpack's own Python (stdlib only): the build image's python3.
PYTHON3 ?= python3
# No bytecode written into the buildpack: platforms may mount it read-only or hand it to the build user.
DC := PYTHONDONTWRITEBYTECODE=1 PYTHONPATH='$(BP)/lib' $(PYTHON3) -m dcbuild
# The steps of every build (dcbuild.slug) keep the bytecode of what they import in the cache
# instead (-X pycache_prefix, which their children do not inherit; dcbuild.slug sets
# PYTHONDONTWRITEBYTECODE again for them): compiling dcbuild's modules at every start would cost
# about as much as their work. DC_FAST_NOSITE: no site-packages either, for what needs none.
DC_FAST = PYTHONDONTWRITEBYTECODE= PYTHONPATH='$(BP)/lib' $(PYTHON3) -X pycache_prefix='$(CACHE)/pycache' -m dcbuild
DC_FAST_NOSITE = PYTHONDONTWRITEBYTECODE= PYTHONPATH='$(BP)/lib' $(PYTHON3) -X pycache_prefix='$(CACHE)/pycache' -S -m dcbuild
PLATFORM := $(subst arm64,aarch64,$(shell uname -m))-linux-gnu

# herokuish and Heroku set STACK (heroku-24, ...): compiled packages depend on its libraries.
STACK ?=
CACHE := $(CACHE_DIR)/python-dotcloud
LAYERS := $(CACHE)/layers
SLUG := $(BUILD_DIR)/.dotcloud
STATE := $(SLUG)/state
# Copy a tree: hard links where the filesystem allows, else reflinks or a plain copy. `cp -RPl`
# (-P: symbolic links stay links), not `cp -al`: the files are links (one inode, its attributes),
# and the directories need no times, owner or ACLs copied (4 system calls each, 15-25% of the
# copy; umask 022 keeps their modes). dcbuild.slug.TreeCopy copies the same way.
copy_tree = rm -rf "$(2)" && { (umask 022 && cp -RPl "$(1)" "$(2)") 2>/dev/null || { rm -rf "$(2)" && cp -a --reflink=auto "$(1)" "$(2)"; }; }

.PHONY: help
help:
	@sed -n 's/^#   //p' '$(BP)/Makefile'

# --- the runtime layer ---------------------------------------------------------------
# make python-3.13.0: fetch (or package) and unpack that runtime into the cache.
python-%: | $(LAYERS)/runtime-%-$(PLATFORM) ;

$(LAYERS)/runtime-%:
	@echo "-----> Installing Python $(firstword $(subst -, ,$*))"
	@mkdir -p '$(LAYERS)'
	@$(DC).runtime --cache '$(CACHE)' install '$(firstword $(subst -, ,$*))' '$@'

ifneq ($(BUILD_DIR),)
# What this build makes, decided once from the app's files (dcbuild/plan.py): PY_VERSION,
# PY_ORIGIN, APPROOT, USER_REQS, USER_HASH (REQS_HASH + LOCAL_HASH), USER_REQS_LABEL, USER_LOCK,
# INDEX_HASH, INSTALLER (uv or pip), DOTCLOUD_SERVICE_NAME, DOTCLOUD_SERVICE_TYPE. The same process then writes the layers' keys
# (PY_KEY, DCREQS_HASH, DC_KEY, USER_KEY, INSTALLER_ID) and the slug's steps' keys (dcbuild/slug.py):
# DCRUNTIME_HASH, PROFILE_KEY, CONFIGS_KEY, APPROOT_KEY, CHECKS_KEY, HOOKS_TREE, REPORT_KEY (dcbuild/migrate.py;
# a cached migration report is shown there, see below). Under bin/compile
# (DC_PRECOPY=1) it also starts the environment's copy into the slug when its layer is cached and
# the python step below is due: make's remaining work overlaps the copy, and dcbuild.slug run
# adopts it; bin/compile stops it if the build ends first.
PLAN_FILE := $(STATE)/plan.mk
KEYS_FILE := $(STATE)/keys.mk
PLAN_EMPTY :=
PLAN_STATUS := $(shell $(DC_FAST).slug prepare '$(BUILD_DIR)' --cache '$(CACHE)' --env-dir '$(ENV_DIR)' --out '$(PLAN_FILE)' \
  --keys '$(KEYS_FILE)' --platform '$(PLATFORM)' --stack '$(STACK)' $(if $(DC_PRECOPY),--precopy) >&2 || echo FAILED)
ifneq ($(PLAN_STATUS),)
$(error Build stopped)
endif
include $(PLAN_FILE) $(KEYS_FILE)
export APPROOT

# --- the dependency layers --------------------------------------------------------------
# uv's own cache, or pip's; --tools: where the pinned uv binary is kept.
INSTALL_ARGS := --installer '$(INSTALLER)' --tools '$(CACHE)' --cache '$(CACHE)/$(INSTALLER)' \
  --wheelhouse '$(CACHE)/wheels' --env-dir '$(ENV_DIR)'
DC_LAYER := $(LAYERS)/dcreqs-$(DC_KEY)
# uv.lock: exported to USER_REQS by the install itself, with the runtime it installs into (no
# interpreter of the build machine is looked for).
USER_LOCK_ARGS := $(if $(USER_LOCK),--uv-lock '$(USER_LOCK)')

USER_LAYER := $(if $(USER_REQS),$(LAYERS)/userreqs-$(USER_KEY),$(DC_LAYER))
# The migration report (dcbuild/migrate.py): the app's Python files compiled by the target Python,
# removed modules, requirements, /home/dotcloud, data services. Made after the runtime and before
# any install, so that a failing install still shows it; REPORT_KEY names it by content, and a
# cached one was shown at parse time (dcbuild.slug prepare), its stamp made there.
REPORT_STAMP := $(STATE)/report-$(REPORT_KEY)

# Say what the cache already holds (at parse time, so `make -q` stays quiet about work).
ifneq ($(wildcard $(LAYERS)/runtime-$(PY_KEY)),)
$(info -----> Using cached Python $(PY_VERSION) ($(PY_ORIGIN)))
endif
ifneq ($(wildcard $(DC_LAYER)),)
$(info -----> Using cached dotCloud requirements (config/dcrequirements.txt unchanged))
endif
ifneq ($(USER_REQS),)
ifneq ($(wildcard $(USER_LAYER)),)
$(info -----> Using cached packages ($(USER_REQS_LABEL) unchanged))
endif
endif

# The migration report, when the prepare step took it from the cache: printed here, on stdout
# with the rest of the log ($(file <...) takes the text as it is: no make syntax in it is read).
ifneq ($(wildcard $(STATE)/report.printed),)
$(info $(file <$(STATE)/report.printed))
endif

STATE_ARGS := --cache '$(CACHE)' --python '$(PY_VERSION)' --stack '$(STACK)' --dcreqs '$(DCREQS_HASH)' \
  --userreqs '$(if $(USER_REQS),$(REQS_HASH))' --requirements '$(USER_REQS_LABEL)' --installer '$(INSTALLER_ID)' \
  --locals '$(LOCAL_HASH)' --index '$(INDEX_HASH)'

.PHONY: compile python dcreqs userreqs profile
compile: userreqs profile nginx checks configs approot hooks

python: | $(LAYERS)/runtime-$(PY_KEY)
dcreqs: | $(DC_LAYER)
userreqs: | $(STATE)/python-$(USER_KEY)

$(REPORT_STAMP): | $(LAYERS)/runtime-$(PY_KEY)
	@$(DC_FAST_NOSITE).migrate build '$(BUILD_DIR)' --python '$(LAYERS)/runtime-$(PY_KEY)/python/bin/python3' \
	  --version '$(PY_VERSION)' --key '$(REPORT_KEY)' --stamp '$@' --cache '$(CACHE)' \
	  --requirements '$(USER_REQS)' --env-dir '$(ENV_DIR)'

$(DC_LAYER): | $(LAYERS)/runtime-$(PY_KEY) $(REPORT_STAMP)
	@$(DC).cache why --kind dcreqs $(STATE_ARGS)
	@echo "-----> Installing dotCloud requirements (config/dcrequirements.txt)"
	@tmp='$@.tmp.'$$$$; $(call copy_tree,$(LAYERS)/runtime-$(PY_KEY),$$tmp); \
	$(DC).pip "$$tmp/python" config/dcrequirements.txt --cwd '$(BP)' $(INSTALL_ARGS) \
	  --label config/dcrequirements.txt || { rm -rf "$$tmp"; exit 1; }; \
	mv -T "$$tmp" '$@'

$(LAYERS)/userreqs-$(USER_KEY): | $(DC_LAYER) $(REPORT_STAMP)
	@$(DC).cache why --kind userreqs $(STATE_ARGS)
	@echo "-----> Installing requirements with $(INSTALLER) ($(USER_REQS_LABEL))"
	@# Always on a copy of the dcreqs layer, as with an empty cache: an earlier environment's
	@# resolution is never reused (a requirement it satisfied may now resolve to a newer release).
	@# The last environment on the same dcreqs layer only lends the bytecode of the packages
	@# that are the same (dcbuild.bytecode).
	@tmp='$@.tmp.'$$$$; prev=(); \
	last=$$(ls -1td '$(LAYERS)'/userreqs-$(DC_KEY)-* 2>/dev/null | grep -v '[.]tmp[.]' | head -n 1 || true); \
	if [[ -n "$$last" ]]; then prev=(--bytecode-from "$$last/python"); fi; \
	$(call copy_tree,$(DC_LAYER),$$tmp); \
	$(DC).pip "$$tmp/python" '$(USER_REQS)' --cwd '$(BUILD_DIR)' $(INSTALL_ARGS) $(USER_LOCK_ARGS) \
	  --label '$(USER_REQS_LABEL)' "$${prev[@]}" || { rm -rf "$$tmp"; exit 1; }; \
	mv -T "$$tmp" '$@'

# The slug's copy of the environment (keyed like the layer it comes from), and the .profile.d
# scripts: ours, and dotcloud.yml's environment: (PROFILE_KEY: service.json's content).
PYTHON_STAMP := $(STATE)/python-$(USER_KEY)
PROFILE_STAMP := $(STATE)/profile-$(PROFILE_KEY)
profile: | $(PROFILE_STAMP)
endif

# nginx.mk before web.mk: configs copies files out of the nginx layer.
include $(BP)/mk/nginx.mk $(BP)/mk/web.mk $(BP)/mk/hooks.mk $(BP)/mk/dist.mk

ifneq ($(BUILD_DIR),)
# --- the slug's steps ---------------------------------------------------------------------
# Every build in a fresh directory makes these, layers cached or not: one stamp each, named after
# what the step reads; one grouped target (GNU make 4.3), so that one process (dcbuild/slug.py)
# runs whichever are missing, in this order: checks, profile, configs, approot (the environment's
# hard links, python, being made in the background meanwhile), python, hooks.
ifeq ($(filter grouped-target,$(.FEATURES)),)
$(error GNU make 4.3 or newer is needed (grouped targets); this is make $(MAKE_VERSION))
endif
SLUG_STEPS := checks=$(CHECKS_STAMP) python=$(PYTHON_STAMP) profile=$(PROFILE_STAMP) configs=$(CONFIGS_STAMP) \
  approot=$(APPROOT_STAMP) hooks=$(HOOKS_STAMP)
# What they need, in this order: the packages first (make would take the layers, which .SECONDARY
# makes intermediate files, after the nginx stamp otherwise), then nginx, then the bytecode.
.PHONY: slug-inputs slug-layers
slug-layers: | $(REPORT_STAMP) $(USER_LAYER)
slug-inputs: | slug-layers $(NGINX_STAMP) $(RUNTIME_LIB)
$(foreach step,$(SLUG_STEPS),$(lastword $(subst =, ,$(step)))) &: | slug-inputs
	@$(DC_FAST_NOSITE).slug run '$(BUILD_DIR)' $(foreach step,$(SLUG_STEPS),--step '$(step)') \
	  $(STATE_ARGS) --layer '$(USER_LAYER)' --runtime-lib '$(RUNTIME_LIB)' --python-key '$(USER_KEY)' \
	  --env-dir '$(ENV_DIR)' --cache-dir '$(CACHE_DIR)' \
	  --python-message 'Python $(PY_VERSION) ($(PY_ORIGIN)) with $(if $(USER_REQS),$(USER_REQS_LABEL),no requirements.txt)' \
	  --used '$(LAYERS)/runtime-$(PY_KEY)' --used '$(DC_LAYER)' --used '$(USER_LAYER)' --used '$(RUNTIME_LIB)' \
	  --used '$(CACHE)/runtimes/cpython-$(PY_KEY).tar.gz'
endif

# --- the migration report on its own ------------------------------------------------------
# make report APP=path/to/app [OUT=file]: what the build's migration report would say, before the
# first deploy (bin/report runs this). The app's directory is only read; the runtime it names is
# fetched into CACHE_DIR as a build would.
APP ?=
OUT ?=
.PHONY: report
ifeq ($(APP),)
report:
	$(error make report needs APP=path/to/app)
else
REPORT_PY := $(shell $(DC_FAST).migrate python '$(APP)' --cache '$(CACHE)' || echo FAILED)
ifeq ($(REPORT_PY),)
$(error Report stopped)
endif
ifneq ($(filter FAILED,$(REPORT_PY)),)
$(error Report stopped)
endif
report: | $(LAYERS)/runtime-$(lastword $(REPORT_PY))-$(PLATFORM)
	@$(DC).migrate report '$(APP)' --python '$(LAYERS)/runtime-$(lastword $(REPORT_PY))-$(PLATFORM)/python/bin/python3' \
	  --version '$(lastword $(REPORT_PY))' --cache '$(CACHE)' $(if $(OUT),--out '$(OUT)')
endif

# --- development ------------------------------------------------------------------------
TEST_VENV := $(BP)/.venv-test
.PHONY: test lint
$(TEST_VENV)/.ok: $(BP)/tests/requirements.txt
	$(PYTHON3) -m venv '$(TEST_VENV)'
	'$(TEST_VENV)/bin/pip' install --quiet -r '$(BP)/tests/requirements.txt'
	touch '$@'

# The vendored nginx is built once (not per test build), then lint, then the suite.
test: $(TEST_VENV)/.ok vendor lint
	'$(TEST_VENV)/bin/python' -m pytest '$(BP)/tests'

# ruff, shellcheck, and `nginx -t` (the vendored nginx, built if missing) over our nginx template
# rendered with sample values by the runtime's renderer.
lint: $(TEST_VENV)/.ok | $(NGINX_VENDOR)
	'$(TEST_VENV)/bin/ruff' check '$(BP)/lib' '$(BP)/tests'
	'$(TEST_VENV)/bin/shellcheck' $$(grep -lE '^#!/(usr/)?bin/(env )?(ba)?sh' '$(BP)'/bin/* '$(BP)'/vendor/*/recipe* '$(BP)'/tests/*.sh)
	PYTHON3='$(PYTHON3)' '$(BP)/tests/nginx_lint.sh' '$(NGINX_VENDOR)'

# Rebuild vendor/python/manifest.tsv from the newest pbs-installer release on PyPI.
.PHONY: python-manifest
python-manifest:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON3) -m pip download --quiet --no-deps --only-binary=:all: -d "$$tmp" pbs-installer; \
	$(DC).manifest generate "$$tmp"/pbs_installer-*.whl

# Build the bundled sample app (test/fixtures/sample) and serve it on $PORT (default 5000).
SERVE_DIR := $(BP)/cache/serve
# Developer targets may apt-get nginx's build dependencies (root only); bin/compile never does.
serve test bench soak vendor lint: export DC_AUTO_APT := 1
PORT ?= 5000
.PHONY: serve
serve:
	@rm -rf '$(SERVE_DIR)/app' && mkdir -p '$(SERVE_DIR)' && cp -a '$(BP)/test/fixtures/sample' '$(SERVE_DIR)/app'
	@'$(BP)/bin/compile' '$(SERVE_DIR)/app' '$(CACHE_DIR)'
	@cd '$(SERVE_DIR)/app' && HOME='$(SERVE_DIR)/app' PORT='$(PORT)' bash -c \
	  'for f in .profile.d/*.sh; do . "$$f"; done; \
	   if [[ -x bin/dcweb ]]; then echo "-----> Serving on http://127.0.0.1:$$PORT (Ctrl-C stops)"; exec bin/dcweb; fi; \
	   exec python3 -c "import wsgi, sys; print(\"-----> The sample app imports with Python\", sys.version.split()[0])"'

# Compile and serving figures, side by side in one run (a benchmark, not a test).
.PHONY: bench
BENCH_ARGS ?=
bench: $(TEST_VENV)/.ok vendor
	'$(TEST_VENV)/bin/python' '$(BP)/tests/bench.py' $(BENCH_ARGS)

# The web process under 60 s of load per URL, then while a uWSGI worker is killed every 5 s
# (a benchmark, not a test; exits 1 when a target is missed). SOAK_SECONDS, SOAK_WARMUP,
# SOAK_CONNECTIONS and SOAK_KILL_EVERY change it (SOAK_SECONDS=10 SOAK_WARMUP=2: a short run).
.PHONY: soak
soak: $(TEST_VENV)/.ok vendor
	CACHE_DIR='$(CACHE_DIR)' '$(TEST_VENV)/bin/python' '$(BP)/tests/soak.py'
