#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages (never assumed present):
# Debian's Chromium for the headless-browser report tests; PostgreSQL for the server tests.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's chromium for the browser tests ..."
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "warning: could not install chromium; browser tests will fail" >&2
    else
        echo "warning: chromium missing and cannot be installed (need root + apt-get)" >&2
    fi
fi
# PostgreSQL for the market server's tests (tests/service start and stop a throwaway cluster on
# loopback themselves; nothing is started here).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's PostgreSQL for the market server tests ..."
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
            || echo "warning: could not install postgresql; the PostgreSQL tests will fail" >&2
    else
        echo "warning: PostgreSQL missing and cannot be installed (need root + apt-get)" >&2
    fi
fi
