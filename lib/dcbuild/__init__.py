"""The buildpack's own Python: logic that needs care, run with the build image's python3.

Each module has one job and runs as ``python3 -m dcbuild.<module>`` from make recipes.
Standard library only: this code runs before the app's Python runtime exists.
"""

