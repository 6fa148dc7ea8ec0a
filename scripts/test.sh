#!/usr/bin/env bash
# Runs every check of the project, in order, and exits non-zero if any fails.
# Each step is announced and timed; go's own output goes to stdout so CI sees
# go test's closing lines. Later steps still run after a failure, so one run
# shows everything that is wrong.
#
#   ./scripts/test.sh
set -uo pipefail

cd "$(dirname "$0")/.."

# Bounded fuzzing: one "FuzzName ./package" entry per target, for example
# "FuzzParse ./pki" (the PEM parsers).
fuzz_targets=(
	"FuzzParse ./pki"
	"FuzzValidate ./material"
)
fuzz_time=10s

tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT

failed=()
summary=()

now_ms() { date +%s%3N; }

# step NAME COMMAND...: announce, run, time and record one step.
step() {
	local name=$1
	shift
	echo
	echo "==> $name"
	# Functions print their own commands; plain commands are shown here.
	[ "$(type -t "$1")" = function ] || echo "\$ $*"
	local start rc
	start=$(now_ms)
	"$@"
	rc=$?
	local took=$(($(now_ms) - start))
	local secs
	secs=$(printf '%d.%03ds' $((took / 1000)) $((took % 1000)))
	if [ "$rc" -eq 0 ]; then
		echo "<== $name: ok in $secs"
		summary+=("ok    $secs  $name")
	else
		echo "<== $name: FAILED (exit $rc) in $secs"
		summary+=("FAIL  $secs  $name")
		failed+=("$name")
	fi
}

fuzz() {
	local entry target pkg rc=0
	if [ ${#fuzz_targets[@]} -eq 0 ]; then
		echo "no fuzz targets listed"
		return 0
	fi
	for entry in "${fuzz_targets[@]}"; do
		read -r target pkg <<<"$entry"
		echo "\$ go test -run='^\$' -fuzz=^${target}\$ -fuzztime=$fuzz_time $pkg"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzz_time" -fuzzminimizetime=2s "$pkg" || rc=1
	done
	return "$rc"
}

# setup installs what the tests need from Debian's packages: a C compiler
# for -race and Chromium for the report's browser test. Both are skipped
# when present, so a warm machine pays nothing.
setup() {
	if ! command -v gcc >/dev/null 2>&1; then
		echo "installing gcc (the race detector needs cgo)"
		apt_install gcc || return 1
	fi
	./scripts/install-chromium.sh || return 1
	# nats-server for the host end-to-end tests (they build the worker).
	./scripts/build-nats-server.sh >/dev/null || return 1
}

apt_install() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "need root to apt-get install $*" >&2
		return 1
	fi
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >/dev/null
}

race_tests() {
	# -race needs cgo; go turns cgo off where no C compiler is found.
	if [ "$(go env CGO_ENABLED)" != "1" ]; then
		echo "the race detector needs cgo and a C compiler (apt-get install gcc)"
		return 1
	fi
	echo "\$ go test -race -count=1 ./..."
	go test -race -count=1 ./...
}

e2e() {
	echo "\$ NATSCERT_E2E=1 go test -count=1 -run E2E ./rotation/..."
	NATSCERT_E2E=1 go test -count=1 -run E2E ./rotation/...
}

load() {
	# One package at a time: the load tests each want the whole machine.
	echo "\$ NATSCERT_LOAD=1 go test -p 1 -count=1 -run 'Load' ./..."
	NATSCERT_LOAD=1 go test -p 1 -count=1 -run 'Load' ./...
}

drill() {
	echo "\$ go run ./cmd/natscert drill --out $tmpdir"
	go run ./cmd/natscert drill --out "$tmpdir" || return 1
	# The drill's own report, rendered in Chromium and checked against its JSON.
	echo "\$ NATSCERT_REPORT_JSON=$tmpdir/report.json go test -count=1 -run Browser ./report"
	NATSCERT_REPORT_JSON="$tmpdir/report.json" go test -count=1 -run Browser ./report
}

go version
export NATSCERT_BROWSER=1
step "setup" setup
step "vet" go vet ./...
step "test (race)" race_tests
step "e2e (hosts)" e2e
step "load" load
step "fuzz" fuzz
step "drill" drill

echo
echo "summary:"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	echo "FAILED: ${failed[*]}"
	exit 1
fi
echo "all steps passed"
