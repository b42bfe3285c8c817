#!/usr/bin/env bash
# Runs every SPIN model of formal/ and its mutants: a model must report no
# error, a mutant at least one, and the violated assertion must be the one
# the mutant is meant to break. Prints, per run, states stored, depth
# reached and time; exits non-zero on any unexpected outcome. Two runs at
# a time (JOBS=n to change).
set -euo pipefail

cd "$(dirname "$0")"
for tool in spin gcc; do
	command -v "$tool" >/dev/null 2>&1 || { echo "formal: $tool not found (apt-get install spin gcc)" >&2; exit 1; }
done
JOBS="${JOBS:-2}"
work="$(mktemp -d "${TMPDIR:-/tmp}/protoraft-formal.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# name|model|spin defines|expect (pass, or the text of the assertion the
# trail must show failing)|pan options
runs=(
	"reads|reads.pml||pass|-m100000"
	"reads-mutant|reads.pml|-DMUTANT|(applied[rnode[r]]>=racked[r])|-m100000"
	"lease|lease.pml||pass|-m10000"
	"lease-mutant|lease.pml|-DMUTANT|!(racked)|-m10000"
	"lease-nomargin|lease.pml|-DNOMARGIN|!(racked)|-m10000"
	"lease-nomargin-nodrift|lease.pml|-DNOMARGIN -DDRIFT=0|pass|-m10000"
	"sessions|sessions.pml||pass|-m10000"
	"sessions-mutant|sessions.pml|-DMUTANT|(applies[s]==1)|-m10000"
	"sessions-no-open-index|sessions.pml|-DNO_OPEN_INDEX|(applies[s]==1)|-m10000"
	"membership|membership.pml||pass|-m100000"
	"membership-mutant|membership.pml|-DMUTANT|(got>=need)|-m100000"
)

one() {
	local name="$1" model="$2" defs="$3" expect="$4" opts="$5"
	local dir="$work/$name"
	mkdir -p "$dir"
	cp ./*.pml "$dir/"
	(
		cd "$dir"
		# shellcheck disable=SC2086
		spin -a $defs "$model" >spin.out 2>&1 || { echo "FAIL $name: spin -a"; cat spin.out; exit 1; }
		gcc -w -O2 -DSAFETY -o pan pan.c >gcc.out 2>&1 || { echo "FAIL $name: gcc"; cat gcc.out; exit 1; }
		local t0 t1
		t0=$(date +%s.%N)
		# shellcheck disable=SC2086
		./pan $opts >pan.out 2>&1 || true
		t1=$(date +%s.%N)
		local errors states depth secs
		errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.out | tail -1)
		states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' pan.out | tail -1)
		depth=$(sed -n 's/.*depth reached \([0-9]*\),.*/\1/p' pan.out | tail -1)
		secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
		if grep -q "error: max search depth too small" pan.out; then
			echo "FAIL $name: the depth bound cut the search ($opts)"; exit 1
		fi
		local line
		line=$(printf "%-24s states %-10s depth %-6s %6ss errors %s" "$name" "$states" "$depth" "$secs" "$errors")
		if [ -z "$errors" ]; then
			echo "FAIL $line: no result"; cat pan.out; exit 1
		fi
		if [ "$expect" = pass ]; then
			[ "$errors" = 0 ] || { echo "FAIL $line: the model has a violation"; grep -m1 "violated\|error" pan.out; exit 1; }
			echo "ok   $line"
		else
			[ "$errors" -ge 1 ] || { echo "FAIL $line: the mutant was not caught"; exit 1; }
			# The trail replayed must end in the intended assertion.
			# shellcheck disable=SC2086
			spin -t $defs "$model" >trail.out 2>&1 || true
			if ! grep -F "text of failed assertion" trail.out | grep -qF "assert($expect)"; then
				echo "FAIL $line: the trail shows another failure:"; grep -m3 "violated\|error" trail.out pan.out; exit 1
			fi
			echo "ok   $line  (caught: assert($expect) at depth $(sed -n 's/.*violated.*(at depth \([0-9]*\)).*/\1/p' pan.out | head -1))"
		fi
	)
}

pids=()
status=0
for spec in "${runs[@]}"; do
	IFS='|' read -r name model defs expect opts <<<"$spec"
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
		wait -n || status=1
	done
	one "$name" "$model" "$defs" "$expect" "$opts" &
	pids+=($!)
done
for pid in "${pids[@]}"; do
	wait "$pid" || status=1
done
if [ "$status" != 0 ]; then
	echo "formal: unexpected outcome" >&2
	exit 1
fi
echo "formal: every model holds, every mutant caught"
