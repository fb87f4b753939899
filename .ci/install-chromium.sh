#!/usr/bin/env bash
# Install what tests/browser.py needs: Debian's chromium + chromium-driver and
# selenium into the current Python environment. Idempotent: skips each part
# that is already there. Python used: $PYTHON, else `python`, else `python3`.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "install-chromium: chromium and chromedriver already present"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "install-chromium: not root and no sudo; cannot apt-get install chromium" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
    echo "install-chromium: installed $(chromium --version 2>/dev/null | head -n1)"
fi

# --system-only: Debian packages only (selenium comes with the project's `test` extra)
[ "${1:-}" = "--system-only" ] && exit 0

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if command -v python >/dev/null 2>&1; then PY=python; else PY=python3; fi
fi
if "$PY" -c "import selenium" >/dev/null 2>&1; then
    echo "install-chromium: selenium already installed for $PY"
else
    "$PY" -m pip install --quiet selenium
    echo "install-chromium: installed selenium for $PY"
fi
