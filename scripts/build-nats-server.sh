#!/usr/bin/env bash
# Builds nats-server at the version go.mod requires, once, into the user's
# cache, and prints the binary's path. The e2e tests run it as real
# processes.
#
#   bin=$(scripts/build-nats-server.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
dir="${XDG_CACHE_HOME:-$HOME/.cache}/natscert/bin"
out="$dir/nats-server-$version"
if [[ ! -x "$out" ]]; then
	mkdir -p "$dir"
	tmp=$(mktemp "$dir/.nats-server-$version.XXXXXX")
	trap 'rm -f "$tmp"' EXIT
	go build -o "$tmp" github.com/nats-io/nats-server/v2
	mv -f "$tmp" "$out"
	trap - EXIT
fi
echo "$out"
