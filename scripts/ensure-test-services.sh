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
