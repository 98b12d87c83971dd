#!/usr/bin/env bash
# The web console's browser tests, as scripts/test runs them:
#   gui/tests/run.sh prereqs   Node.js 20+ and npm present, Chromium installed (apt-get
#                              when missing and root or passwordless sudo); fails loudly
#                              when either cannot be had.
#   gui/tests/run.sh run       npm packages installed, the broker built (debug, with the
#                              console embedded), then the tests in headless Chromium.
# Screenshots land in target/gui-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export CHROMIUM

prereqs() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "error: the web console's build and browser tests need Node.js 20+ and npm (https://nodejs.org, or apt-get install nodejs npm)" >&2
    exit 1
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$major" -lt 20 ]; then
    echo "error: Node.js $(node --version) is too old; the web console needs 20+" >&2
    exit 1
  fi
  if [ ! -x "$CHROMIUM" ]; then
    local sudo=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    fi
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; }; then
      echo "Installing Chromium for the browser tests (apt-get install chromium)..." >&2
      export DEBIAN_FRONTEND=noninteractive
      $sudo apt-get install -y -qq chromium >/dev/null 2>&1 ||
        { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium; }
    fi
    if [ ! -x "$CHROMIUM" ]; then
      echo "error: the browser tests need Chromium at $CHROMIUM and it could not be installed here." >&2
      echo "       Install the Debian package 'chromium' (apt-get install chromium), or set CHROMIUM to a Chromium binary." >&2
      exit 1
    fi
  fi
}

run() {
  # The cargo build normally ran `npm ci` already; a lock file newer than the
  # installed packages means it did not.
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
  (cd .. && REQUIRE_JUNCTION_GUI=1 cargo build --locked --bin junction)
  npm run --silent test:browser
}

case "${1:-all}" in
  prereqs) prereqs ;;
  run) run ;;
  all) prereqs && run ;;
  *) echo "usage: $0 [prereqs|run|all]" >&2; exit 2 ;;
esac
