#!/bin/sh
# verdicts.sh: compares the per-message verdicts of two runs of miltergen
# (its --verdicts files: path, verdict, what decided it, tab-separated).
#
#   sh tests/bench/verdicts.sh A.verdicts B.verdicts [NAME-A NAME-B]
#
# Prints every message whose verdicts differ ("differ PATH: A VERDICT
# (WHY), B VERDICT (WHY)"), every message only one side answered, then a
# count of each pair of verdicts and a summary line "compared N same N
# differ N". Exit status 0 (differences are a finding, not an error), 2
# for a usage error.
set -u
if [ $# -ne 2 ] && [ $# -ne 4 ]; then
	echo "usage: $0 A.verdicts B.verdicts [NAME-A NAME-B]" >&2
	exit 2
fi
A=${3:-A}
B=${4:-B}
awk -F '\t' -v na="$A" -v nb="$B" '
FNR == 1 { side++ }
side == 1 { va[$1] = $2; wa[$1] = $3; next }
{ vb[$1] = $2; wb[$1] = $3 }
END {
	n = same = diff = 0
	for (p in va) {
		if (!(p in vb)) {
			printf "1 only-in %s %s: %s (%s)\n", na, p, va[p], wa[p]
			continue
		}
		n++
		pair[va[p] " " vb[p]]++
		if (va[p] == vb[p]) {
			same++
			continue
		}
		diff++
		printf "1 differ %s: %s %s (%s), %s %s (%s)\n", p, na, va[p],
		    wa[p], nb, vb[p], wb[p]
	}
	for (p in vb)
		if (!(p in va))
			printf "1 only-in %s %s: %s (%s)\n", nb, p, vb[p], wb[p]
	printf "2 pairs (%s -> %s):\n", na, nb
	for (k in pair) {
		split(k, v, " ")
		printf "3   %-10s -> %-10s %d\n", v[1], v[2], pair[k]
	}
	printf "4 compared %d same %d differ %d\n", n, same, diff
}' "$1" "$2" | sort | cut -d' ' -f2-
