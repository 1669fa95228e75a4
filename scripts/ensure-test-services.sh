#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages (never assumed present):
# Debian's Chromium for the headless-browser report tests; PostgreSQL for the server tests.
set -euo pipefail
# apt_install PACKAGE PURPOSE: install a Debian package as root, or warn what will fail.
apt_install() {
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's $1 for the $2 ..."
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null) \
            || echo "warning: could not install $1; the $2 will fail" >&2
    else
        echo "warning: $1 missing and cannot be installed (need root + apt-get); the $2 will fail" >&2
    fi
}
if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium "browser tests"
fi
# PostgreSQL for the market server's tests (tests/service start and stop a throwaway cluster on
# loopback themselves; nothing is started here).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    apt_install postgresql "PostgreSQL tests"
fi
# Hardhat's EVM node (npm) for the chain tests against a real JSON-RPC node on loopback
# (src/lemgrid/ledger/evmnode.py starts and stops it; nothing is started here).
HARDHAT_VERSION=2.29.1
EVM_NODE_DIR="${LEMGRID_EVM_NODE_DIR:-$HOME/.cache/lemgrid/evm-node}"
if [ ! -x "$EVM_NODE_DIR/node_modules/.bin/hardhat" ] \
        || ! grep -q "\"version\": \"$HARDHAT_VERSION\"" "$EVM_NODE_DIR/node_modules/hardhat/package.json" 2>/dev/null; then
    if ! command -v npm >/dev/null 2>&1; then
        apt_install npm "EVM node tests"
    fi
    if command -v npm >/dev/null 2>&1; then
        echo "installing Hardhat $HARDHAT_VERSION (npm) into $EVM_NODE_DIR for the EVM node tests ..."
        mkdir -p "$EVM_NODE_DIR"
        [ -f "$EVM_NODE_DIR/package.json" ] || echo '{"private": true}' > "$EVM_NODE_DIR/package.json"
        (cd "$EVM_NODE_DIR" && npm install --no-audit --no-fund --loglevel=error \
            "hardhat@$HARDHAT_VERSION" >/dev/null) \
            || echo "warning: could not install Hardhat; the EVM node tests will fail" >&2
    else
        echo "warning: npm missing; the EVM node tests will fail" >&2
    fi
fi
# `hardhat node` wants a configuration file in its directory; an empty one takes the defaults.
if [ -d "$EVM_NODE_DIR" ] && [ ! -f "$EVM_NODE_DIR/hardhat.config.js" ]; then
    echo "module.exports = {};" > "$EVM_NODE_DIR/hardhat.config.js"
fi
