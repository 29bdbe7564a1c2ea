#!/usr/bin/env bash
# Create the virtualenv and install the project (with the given extras) into it.
set -euo pipefail
python=$1 venv=$2 target=$3
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    # Debian and Ubuntu ship venv separately from python3.
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      echo "Installing python3-venv (Debian package) ..."
      DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      "$python" -m venv "$venv"
    else
      echo "'$python -m venv' failed. On Debian/Ubuntu run: sudo apt-get install python3-venv" >&2
      exit 1
    fi
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
echo "Installing provisioner ($target) into $venv ..."
# Exactly the versions the tests ran on (requirements.lock), for make run as for make test.
"$venv/bin/python" -m pip install -q -c requirements.lock -e "$target"
