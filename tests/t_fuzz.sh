#!/bin/sh
# t_fuzz.sh: the libFuzzer harnesses of fuzz/ (see fuzz/README.md), built
# with clang, ASan and UBSan apart from the autotools build, then per
# target: the regression inputs of fuzz/regress/TARGET/ replayed once each,
# and a bounded fuzzing run from fuzz/seeds/TARGET/ with fuzz/TARGET.dict
# if there is one (FUZZ_SECONDS each, default 20). A crash, leak, sanitizer report, failed check or timeout
# fails the target; its reproducer is kept under tests/out/fuzz/TARGET/.
# FUZZ_TARGETS="msg rules" picks some targets.
. "$(dirname "$0")/lib.sh"

SECS=${FUZZ_SECONDS:-20}
TARGETS=${FUZZ_TARGETS:-conf rules msg milter}
FZ="$BUILDDIR/fuzz"
ART="$BUILDDIR/tests/out/fuzz"

if ! command -v clang >/dev/null; then
	echo "1..0 # SKIP clang missing"
	exit 0
fi
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' >"$WORK/probe.c"
if ! clang -fsanitize=fuzzer,address,undefined "$WORK/probe.c" \
	-o "$WORK/probe" >"$WORK/probe.log" 2>&1; then
	echo "1..0 # SKIP clang's libFuzzer runtime missing (Debian: libclang-rt-14-dev)"
	sed 's/^/# /' "$WORK/probe.log" | head -5
	exit 0
fi
if [ ! -f "$BUILDDIR/config.h" ]; then
	echo "1..0 # SKIP no config.h in $BUILDDIR: run ./configure first"
	exit 0
fi

# Build: one job per CPU, quietly; the log only when it fails.
progs=""
for t in $TARGETS; do progs="$progs $FZ/fuzz_$t"; done
# shellcheck disable=SC2086
make -s -j"$(nproc 2>/dev/null || echo 2)" -f "$SRCDIR/fuzz/Makefile" \
	SRCDIR="$SRCDIR" TOP="$BUILDDIR" OUT="$FZ" $progs >"$WORK/build.log" 2>&1
rc=$?
ok $rc "build the fuzz harnesses ($TARGETS)"
if [ $rc -ne 0 ]; then
	tail -30 "$WORK/build.log" | sed 's/^/# /'
	done_testing
	exit 1
fi

# report LOG: the top of a libFuzzer failure report and the reproducer.
report() {
	grep -n -m1 -E '^==[0-9]+==ERROR|ERROR: libFuzzer|runtime error|check failed|^SUMMARY' "$1" |
		cut -d: -f1 | {
		read -r first || first=1
		sed -n "${first},$((first + 16))p" "$1" | sed 's/^/#   /'
	}
	grep -E 'Test unit written to|^artifact_prefix|^Running: ' "$1" | tail -3 | sed 's/^/#   /'
}

for t in $TARGETS; do
	prog="$FZ/fuzz_$t"
	mkdir -p "$ART/$t"
	rm -f "$ART/$t"/crash-* "$ART/$t"/leak-* "$ART/$t"/timeout-* \
		"$ART/$t"/oom-* "$ART/$t"/slow-unit-*

	# Every input that once crashed, replayed once.
	reg=$(find "$SRCDIR/fuzz/regress/$t" -type f ! -name '.*' 2>/dev/null | sort)
	if [ -z "$reg" ]; then
		skip "fuzz_$t: no regression inputs in fuzz/regress/$t"
	else
		n=$(printf '%s\n' "$reg" | wc -l | tr -d ' ')
		# shellcheck disable=SC2086
		timeout 600 "$prog" -rss_limit_mb=2048 -timeout=10 \
			-artifact_prefix="$ART/$t/" $reg >"$ART/$t/regress.log" 2>&1
		rc=$?
		ok $rc "fuzz_$t: $n regression inputs replay cleanly"
		[ $rc -ne 0 ] && report "$ART/$t/regress.log"
	fi

	# A bounded run from the seeds (the regressions too); new inputs go
	# to a scratch corpus, never into the source tree.
	corpus="$WORK/corpus-$t"
	mkdir -p "$corpus"
	set -- "$corpus" "$SRCDIR/fuzz/seeds/$t"
	[ -n "$reg" ] && set -- "$@" "$SRCDIR/fuzz/regress/$t"
	dict=""
	[ -f "$SRCDIR/fuzz/$t.dict" ] && dict="-dict=$SRCDIR/fuzz/$t.dict"
	start=$(date +%s)
	# shellcheck disable=SC2086
	timeout $((SECS * 2 + 120)) "$prog" -max_total_time="$SECS" $dict \
		-rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
		-artifact_prefix="$ART/$t/" "$@" >"$ART/$t/fuzz.log" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$ART/$t/fuzz.log")
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$ART/$t/fuzz.log")
	cov=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$ART/$t/fuzz.log" | tail -1 |
		sed -n 's/.*\(cov: [0-9]*\).*\(corp: [^ ]*\).*/\1 \2/p')
	ok $rc "fuzz_$t: ${SECS}s of fuzzing without crash, leak or timeout"
	echo "# fuzz_$t: ${took}s, ${runs:-?} runs, ${eps:-?} exec/s, ${cov:-?}"
	if [ $rc -ne 0 ]; then
		[ $rc -eq 124 ] && echo "#   killed after $((SECS * 2 + 120))s: a hang"
		report "$ART/$t/fuzz.log"
		echo "#   reproduce: $prog $(ls "$ART/$t"/crash-* "$ART/$t"/leak-* \
			"$ART/$t"/timeout-* "$ART/$t"/oom-* 2>/dev/null | head -1)"
		echo "#   keep it as a regression input: cp it to fuzz/regress/$t/"
	fi
done
done_testing
