# The web stack's slug layer (issue 3): runtime scripts and configs, dotCloud's approot links.
# Included by the Makefile; uses BP, BUILD_DIR and DC (the buildpack's own Python, `-m dcbuild`;
# `$(DC).web` runs the dcbuild.web module). Both steps are cheap and run at every compile:
# the build directory is new each time.

.PHONY: configs approot

# uwsgi_params and mime.types come from the nginx layer, so it goes first.
configs: nginx
	@$(DC).web configs '$(BUILD_DIR)'

approot:
	@$(DC).web approot '$(BUILD_DIR)'
