#!/usr/bin/env bash
# Run import-linter's contracts (pyproject.toml [tool.importlinter]) on the installed layout.
# The product brief keeps exporters/ and examples/ at the top level, installed as
# slamp_deploy.exporters and slamp_deploy.examples (setuptools package-dir); import-linter walks
# one folder per package, so the check runs on a copy of the sources laid out as installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# SLAMP_SRC: the tree to check (default: this checkout); the tests point it at a planted copy
src=${SLAMP_SRC:-.}
view=$(mktemp -d)
trap 'rm -rf "$view"' EXIT
cp -r "$src/slamp_deploy" "$view/slamp_deploy"
cp -r "$src/exporters" "$src/examples" "$view/slamp_deploy/"
find "$view" -name __pycache__ -prune -exec rm -rf {} +
# import-linter puts the working folder first on sys.path: run it from the copy, not the checkout
repo=$(pwd)
case "$VENV" in /*) ;; *) VENV="$repo/$VENV" ;; esac
cd "$view"
PYTHONPATH="$view" "$VENV/bin/lint-imports" --no-cache "$repo/pyproject.toml" "$@"
