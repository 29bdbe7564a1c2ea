#!/usr/bin/env bash
# Resolve the newest versions pyproject.toml allows into requirements.lock: the exact versions that
# `make run` and `make test` install (as pip constraints). Run it to upgrade, then `make test`, then move
# pyproject's upper bounds to the new versions (tests/unit/test_dependencies.py checks that they match).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
# Upper bounds are the last tested versions: let the resolver look past them for this run only.
sed -E 's/,? *<=[0-9][^",]*//' pyproject.toml > "$tmp/pyproject.toml"
mkdir "$tmp/src" && cp -r provisioner inventory installs audit access README.md "$tmp/src/" && cp "$tmp/pyproject.toml" "$tmp/src/"
"$tmp/venv/bin/python" -m pip install -q "$tmp/src[dev]"
{
  echo "# The versions make run and make test install (pip constraints). Regenerate: scripts/lock.sh"
  "$tmp/venv/bin/python" -m pip freeze --exclude provisioner
} > requirements.lock
echo "requirements.lock: $(grep -vc '^#' requirements.lock) packages"
