#!/bin/sh
# run.sh: runs every test suite and totals their TAP lines.
#
#   tests/run.sh [BUILDDIR]      (default: the current directory)
#
# Suites: the C unit tests (tests/unit_*) and the scripts tests/t_*.sh, in
# name order; SUITES="unit_conf t_milter" picks some. Each prints TAP. A
# suite that exits non-zero without a "not ok" line counts as one failure.
# Output of each suite goes to $BUILDDIR/tests/out/NAME.log; the last line
# is "N passed, N failed, N skipped".
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=$(cd "${1:-.}" && pwd)
export SRCDIR BUILDDIR
OUT="$BUILDDIR/tests/out"
mkdir -p "$OUT"

suites=""
for f in "$BUILDDIR"/tests/unit_*; do
	case "$f" in *.c | *.o) continue ;; esac
	[ -x "$f" ] && suites="$suites $f"
done
for f in "$SRCDIR"/tests/t_*.sh; do
	[ -f "$f" ] && suites="$suites $f"
done

pass=0 fail=0 skip=0
for s in $suites; do
	name=$(basename "$s" .sh)
	if [ -n "${SUITES:-}" ]; then
		case " $SUITES " in *" $name "*) ;; *) continue ;; esac
	fi
	log="$OUT/$name.log"
	case "$s" in
	*.sh) sh "$s" >"$log" 2>&1 ;;
	*) "$s" >"$log" 2>&1 ;;
	esac
	rc=$?
	p=$(grep -cE '^ok ' "$log" | tr -d ' ')
	sk=$(grep -cE '^ok .*# *(SKIP|skip)' "$log" | tr -d ' ')
	f=$(grep -cE '^not ok ' "$log" | tr -d ' ')
	p=$((p - sk))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "not ok - $name exited $rc without a failing test" >>"$log"
	fi
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + sk))
	printf '%-24s %4d passed, %d failed, %d skipped\n' "$name" "$p" "$f" "$sk"
	if [ "$f" -ne 0 ]; then
		grep -E '^not ok |^#' "$log" | head -40 | sed 's/^/    /'
	fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
