# The app's own build steps (dcbuild/hooks.py): Heroku's bin/pre_compile and bin/post_compile,
# dotcloud.yml's prebuild and postbuild, Django's collectstatic. Included by the Makefile; uses
# BP, DC, BUILD_DIR, CACHE_DIR, ENV_DIR, STATE and USER_KEY (the Python environment's key).
#
#   make pre-compile HOOKS_DIR=... [ENV_DIR=...]   bin/pre_compile, then prebuild
#   make hooks BUILD_DIR=...                       postbuild, collectstatic, bin/post_compile
#
# pre-compile runs before the build plan (runtime.txt, requirement files, dotcloud.yml), since
# the hooks may change those files: bin/compile runs it as a make invocation of its own, with
# the app in HOOKS_DIR and BUILD_DIR empty, so that this invocation computes no plan.
#
# `hooks` comes last in compile. Its stamp is named after the state the steps would run on
# (`dcbuild.hooks.post_key`: the app's files by content, the config vars, hooks.py; then USER_KEY), and
# the steps record the state they leave; an app with none of the hooks gets `hooks-none`. So a
# build in a fresh directory (every build on a platform) runs them all, while after a warm build
# `make -q compile` has nothing to do and a changed app file or config var runs them again.

.PHONY: pre-compile hooks

HOOKS_DIR ?=
pre-compile:
	$(if $(HOOKS_DIR),,$(error HOOKS_DIR is not set: make pre-compile needs the app directory))
	@$(DC).hooks pre '$(HOOKS_DIR)' --env-dir '$(ENV_DIR)' --cache-dir '$(CACHE_DIR)'

ifneq ($(BUILD_DIR),)
# HOOKS_TREE (`dcbuild.hooks.post_key`, written by the build's prepare step with the plan) is `none`
# or the app's state; the stamp adds the Python environment's key (dcbuild.hooks.stamp_name).
HOOKS_KEY := $(if $(filter none,$(HOOKS_TREE)),none,$(HOOKS_TREE)-$(USER_KEY))
ifneq ($(HOOKS_KEY),none)
ifneq ($(wildcard $(STATE)/hooks-$(HOOKS_KEY)),)
$(info -----> Not running the app's build hooks again (the app and its config vars are unchanged since the last build))
endif
endif

# Made by the Makefile's grouped target of the slug's steps (dcbuild/slug.py), after the others.
HOOKS_STAMP := $(STATE)/hooks-$(HOOKS_KEY)
hooks: | $(HOOKS_STAMP)
endif
