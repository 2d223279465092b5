#!/bin/sh
# t_bench_e2e_smoke.sh: the end-to-end benchmark's smoke mode
# (tests/bench/e2e.sh --smoke) runs: every message smtp-source sent through
# a private Postfix reached smtp-sink, without a milter and with edmilter
# on an inet and a unix socket; edmilter logged a verdict with the Postfix
# queue id for each, and its headers arrived at the sink. No timing is
# checked.
. "$(dirname "$0")/lib.sh"

out="$WORK/e2e-smoke.out"
sh "$SRCDIR/tests/bench/e2e.sh" --smoke >"$out" 2>&1
rc=$?
if [ "$rc" -eq 77 ]; then
	echo "1..0 # SKIP $(grep 'SKIP' "$out" | head -1)"
	exit 0
fi
is "$rc" 0 "e2e.sh --smoke exits 0"
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$out" | tail -40

# val CONFIG KEY: one figure of the run.
val() {
	awk -v c="$1" -v k="$2" '$1 == "raw" && $2 == c && $3 == k { print $4 }' \
		"$out"
}
for c in a b-inet b-unix; do
	n=$(val $c sent)
	like "$n" '^[1-9][0-9]*$' "$c: messages sent"
	is "$(val $c delivered)" "$n" "$c: the sink counted every message"
	is "$(val $c sink_kept)" "$n" "$c: the sink kept every message"
	is "$(val $c queued)" 0 "$c: nothing left in Postfix's queue"
done
is "$(val a sink_authres)" 0 "a: no Authentication-Results without a milter"
for c in b-inet b-unix; do
	n=$(val $c sent)
	is "$(val $c milter_verdicts)" "$n" "$c: edmilter logged a verdict for each"
	is "$(val $c milter_verdicts_with_qid)" "$n" \
		"$c: each verdict line has the queue id and client 127.0.0.1"
	is "$(val $c milter_accept)" "$n" "$c: every message accepted"
	is "$(val $c milter_spf_pass)" "$n" \
		"$c: SPF ran and passed for 127.0.0.1 (not an internal host)"
	is "$(val $c sink_authres)" "$n" \
		"$c: edmilter's Authentication-Results reached the sink"
	is "$(val $c sink_dmarc)" "$n" "$c: with a DMARC result"
	is "$(val $c sink_virus_scanned)" "$n" \
		"$c: X-Virus-Scanned reached the sink"
done
done_testing
