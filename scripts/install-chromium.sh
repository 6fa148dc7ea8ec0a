#!/bin/sh
# install-chromium.sh installs Debian's chromium for the report's browser
# test (report/e2e_test.go, run with NATSCERT_BROWSER=1). Idempotent and
# quiet: it does nothing when /usr/bin/chromium is already there, and shows
# apt's output only when apt fails.
set -eu

if [ -x /usr/bin/chromium ]; then
	exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq &&
	$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
	cat "$log" >&2
	echo "install-chromium: apt-get failed" >&2
	exit 1
fi

echo "install-chromium: $(/usr/bin/chromium --version 2>/dev/null)"
