#!/bin/sh
# t_install.sh: `make install` (into a DESTDIR under the test's folder)
# puts in place what README.md and contrib/edmilter.service name: both
# programs, the shipped rules, the README the service's Documentation=
# points at, the rules' manual page; and the installed daemon accepts the
# example configuration with the installed rules.
. "$(dirname "$0")/lib.sh"

DEST="$WORK/inst"
if ! make -s -C "$BUILDDIR" install DESTDIR="$DEST" >"$WORK/install.log" 2>&1; then
	ok 1 "make install DESTDIR=..."
	sed 's/^/#   /' "$WORK/install.log" | tail -20
	done_testing
	exit
fi
ok 0 "make install DESTDIR=..."
# The prefix configure was given (the default /usr/local).
prefix=$(sed -n 's/^prefix = //p' "$BUILDDIR/Makefile")
for f in sbin/edmilter bin/edmilter-scan share/edmilter/baseline.rules \
	share/doc/edmilter/README.md share/man/man5/edmilter.rules.5; do
	[ -s "$DEST$prefix/$f" ]
	ok $? "installed: $prefix/$f"
done
[ -x "$DEST$prefix/sbin/edmilter" ]
ok $? "the daemon is executable"
doc=$(sed -n 's|^Documentation=file://||p' "$SRCDIR/contrib/edmilter.service")
bin=$(sed -n 's|^ExecStart=\([^ ]*\).*|\1|p' "$SRCDIR/contrib/edmilter.service")
if [ "$prefix" = /usr/local ]; then
	[ -s "$DEST$doc" ]
	ok $? "the service's Documentation= is installed: $doc"
	[ -x "$DEST$bin" ]
	ok $? "the service's ExecStart= is installed: $bin"
else
	skip "the service file names /usr/local; configured with $prefix"
	skip "the service file names /usr/local; configured with $prefix"
fi

# The example configuration, made to run here, with the installed rules.
sed -e "s|^ClamAVDatabase.*|ClamAVDatabase $SRCDIR/tests/data/sigs|" \
	-e "s|^#*RulesPath.*|RulesPath $DEST$prefix/share/edmilter/baseline.rules|" \
	-e "s|^#*TemporaryDirectory.*|TemporaryDirectory $WORK|" \
	-e "s|^AllowRoot.*|AllowRoot yes|" \
	"$SRCDIR/contrib/edmilter.conf" >"$WORK/e.conf"
out=$("$DEST$prefix/sbin/edmilter" -n -c "$WORK/e.conf" 2>&1)
rc=$?
is "$rc $out" "0 configuration OK" \
	"the installed daemon checks the example configuration with the installed rules"
done_testing
