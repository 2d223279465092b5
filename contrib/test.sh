#!/bin/sh
# test.sh: installs what is missing, builds edmilter twice (plain, and with
# AddressSanitizer + UndefinedBehaviorSanitizer) and runs every test suite
# on each build, then a third time with ThreadSanitizer for the
# concurrency suite alone. The last line totals every run: "N passed,
# N failed, N skipped".
#
#   sh contrib/test.sh            (from the top of the source tree)
#
# Builds go to build/, build-asan/ and build-tsan/; logs of each suite to
# build*/tests/out/. SUITES="unit_conf t_milter" limits the suites run.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

sh contrib/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

if [ -f config.status ]; then
	echo "test.sh: the source tree is configured in place;" \
		"run 'make distclean' first" >&2
	echo "0 passed, 1 failed"
	exit 1
fi
[ -x configure ] && [ configure -nt configure.ac ] ||
	autoreconf -fi >/dev/null || { echo "0 passed, 1 failed"; exit 1; }

total_p=0 total_f=0 total_s=0
# build DIR [configure options]: configures, builds and runs the suites.
build() {
	dir=$1
	shift
	mkdir -p "$dir"
	echo "== $dir: build ($*)"
	if ! (cd "$dir" && { [ -f Makefile ] || "$top/configure" -q "$@"; } &&
		make -s -j"$(nproc)" all &&
		make -s -j"$(nproc)" check-programs) >"$dir/build.log" 2>&1; then
		tail -30 "$dir/build.log"
		total_f=$((total_f + 1))
		return
	fi
	if grep -q 'warning:' "$dir/build.log"; then
		echo "not ok - $dir: the build has compiler warnings:"
		grep 'warning:' "$dir/build.log" | head -20
		total_f=$((total_f + 1))
	fi
	echo "== $dir: tests"
	sh "$top/tests/run.sh" "$dir" | tee "$dir/tests.log"
	line=$(tail -1 "$dir/tests.log")
	p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1/p')
	f=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\2/p')
	s=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\3/p')
	[ -n "$p" ] || { p=0 f=1 s=0; }
	total_p=$((total_p + p)) total_f=$((total_f + f)) total_s=$((total_s + s))
}

build build
# Sanitizers: every leak, overflow and undefined behaviour fails the test
# that caused it. libclamav's and libmilter's own one-time allocations are
# listed in tests/lsan.supp.
ASAN_OPTIONS="abort_on_error=0:detect_leaks=1:exitcode=86"
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
LSAN_OPTIONS="suppressions=$top/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
build build-asan --enable-sanitizers

# ThreadSanitizer: only t_concurrency, the suite that loads the daemon
# from many connections while it reloads (the others drive one connection
# at a time). Its reports go to the suite's own log; tests/tsan.supp
# names the races inside the uninstrumented libraries.
all_suites=${SUITES:-}
case " ${all_suites:-t_concurrency} " in
*" t_concurrency "*)
	SUITES=t_concurrency
	export SUITES
	build build-tsan --enable-tsan
	SUITES=$all_suites
	;;
esac

echo "$total_p passed, $total_f failed, $total_s skipped"
[ "$total_f" -eq 0 ]
