#!/bin/sh
# t_bench_smoke.sh: the benchmark's smoke mode (tests/bench/run.sh --smoke)
# runs, and the load generator got a final reply for every message it
# sent, with verdict counts that add up. No timing is checked.
. "$(dirname "$0")/lib.sh"

out="$WORK/smoke.out"
sh "$SRCDIR/tests/bench/run.sh" --smoke >"$out" 2>&1
rc=$?
if [ "$rc" -eq 77 ]; then
	echo "1..0 # SKIP $(grep 'SKIP' "$out" | head -1)"
	exit 0
fi
is "$rc" 0 "run.sh --smoke exits 0"
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$out" | tail -30

# val RUN KEY: one figure of miltergen's output for a run.
val() {
	awk -v r="$1" -v k="$2" '$1 == "raw" && $2 == r && $3 == k { print $4 }' \
		"$out"
}
for run in rules-on rules-off; do
	n=$(val $run corpus)
	like "$n" '^[1-9][0-9]*$' "$run: a list of messages"
	is "$(val $run messages)" "$n" "$run: every message of the list sent"
	is "$(val $run final_replies)" "$n" "$run: a final reply for each"
	is "$(val $run errors)" 0 "$run: no connection or protocol error"
	sum=0
	for v in accept quarantine reject tempfail discard; do
		c=$(val $run verdict_$v)
		sum=$((sum + ${c:-0}))
	done
	is "$sum" "$n" "$run: the verdict counts add up"
	like "$(val $run verdict_reject)" '^[1-9]' \
		"$run: the messages with clam.exe are refused"
	is "$(val $run exit)" 0 "$run: miltergen exits 0"
	like "$(val $run vmhwm_kb)" '^[1-9][0-9]*$' "$run: peak memory read"
done
like "$(grep -c '^rules-o[nf]' "$out")" '^2$' "the table has both runs"
done_testing
