#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the documentation site's browser test (tests/test_docs.py).
# Does nothing when /usr/bin/chromium is already there. Needs root (CI and the dev machines run as root) or sudo.
# Only Debian's own package is used: nothing downloads a browser build of its own.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install_chromium.sh: /usr/bin/chromium is missing and this user cannot install it (not root, no sudo)." >&2
    echo "Install Debian's 'chromium' package by hand: apt-get install -y chromium" >&2
    exit 1
  fi
fi

echo "== installing Debian's chromium (for the docs browser test)"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists (or stale ones): try without an update first, then with one.
if ! $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends chromium >/tmp/install_chromium.log 2>&1; then
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -q >>/tmp/install_chromium.log 2>&1
  if ! $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends chromium >>/tmp/install_chromium.log 2>&1; then
    tail -n 30 /tmp/install_chromium.log >&2
    echo "install_chromium.sh: apt-get install chromium failed (log above, full log in /tmp/install_chromium.log)" >&2
    exit 1
  fi
fi
test -x /usr/bin/chromium
/usr/bin/chromium --version 2>/dev/null  # (the Debian launcher script prints a harmless shell warning)
