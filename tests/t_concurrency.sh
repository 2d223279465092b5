#!/bin/sh
# t_concurrency.sh: edmilter under concurrent load while its configuration,
# rules and ClamAV database are reloaded several times a second.
#
# tests/bench/miltergen sends messages for CONC_SECONDS (default 10) over
# CONC_CONNS concurrent connections (32), 10 messages per connection, in
# turn from a list (a few hundred messages in a TSan build, thousands in a
# plain one):
# clean mail (plain and MIME), EICAR in the body and as an attachment, an
# attachment the rules refuse by name, clam.exe in a zip (when
# clamav-testfiles is installed) and, where Knot DNS and dkimpy are at
# hand, a DKIM-signed message and a DMARC spoof, with sender
# authentication on against test zones on loopback. Meanwhile SIGUSR1
# comes every 0.2 s, each time with the other of two configurations, each
# naming its own rules file and database folder: every reload builds and
# swaps a new snapshot (config, resolver, SPF/DKIM engines, rules, ClamAV
# engine) while messages hold the old one.
#
# Asserts: a final reply for every message and no connection error; the
# verdict counts (each message of the list has a known verdict); one log
# line per message; every reload taken; exit status 0 after SIGTERM (in an
# AddressSanitizer build that includes LeakSanitizer finding no leak). In a
# ThreadSanitizer build (configure --enable-tsan) also: no
# ThreadSanitizer report. tests/tsan.supp names races inside the
# uninstrumented libraries only; a race in our code is a failure here.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
GEN="$BUILDDIR/tests/bench/miltergen"
CONNS=${CONC_CONNS:-32}
SECS=${CONC_SECONDS:-10}

make -C "$BUILDDIR" -s bench >"$WORK/make.log" 2>&1
ok $? "miltergen builds (make bench)"
[ -x "$GEN" ] || {
	sed 's/^/#   /' "$WORK/make.log"
	done_testing
	exit 1
}

# The sanitizer the binary carries decides what else is checked.
TSAN=0
if grep -qa __tsan_init "$EDMILTER"; then
	TSAN=1
fi
RUN=""
if [ "$TSAN" -eq 1 ]; then
	# ThreadSanitizer needs a fixed memory layout; on kernels with
	# more address randomisation than it knows it stops at once with
	# "unexpected memory mapping": then run without randomisation.
	if "$EDMILTER" -V 2>&1 | grep -q 'FATAL: ThreadSanitizer'; then
		RUN="setarch $(uname -m) -R"
		echo "# ThreadSanitizer: running under $RUN"
	fi
	mkdir -p "$WORK/tsan"
	# Report every race (not only the first), to files of our own.
	TSAN_OPTIONS="halt_on_error=0:exitcode=66:second_deadlock_stack=1"
	TSAN_OPTIONS="$TSAN_OPTIONS:log_path=$WORK/tsan/report"
	TSAN_OPTIONS="$TSAN_OPTIONS:suppressions=$SRCDIR/tests/tsan.supp"
	# GLib's slice allocator (GMime's objects) hands blocks between
	# threads through its own uninstrumented magazines, which
	# ThreadSanitizer cannot see: plain malloc, which it can.
	G_SLICE=always-malloc
	export TSAN_OPTIONS G_SLICE
fi
# start_milter runs $EDMILTER: a wrapper keeps the pid the daemon's.
cat >"$WORK/edmilter" <<EOF
#!/bin/sh
exec $RUN "$BUILDDIR/edmilter" "\$@"
EOF
chmod +x "$WORK/edmilter"
EDMILTER="$WORK/edmilter"

# Sender authentication when a DNS server and a DKIM signer are at hand.
AUTH=0
if command -v knotd >/dev/null && command -v kdig >/dev/null &&
	command -v openssl >/dev/null &&
	"$PY" -c 'import dkim, nacl, cryptography' 2>/dev/null; then
	AUTH=1
else
	echo "# no knotd or dkimpy: sender authentication off"
fi

# The messages and the verdict each must get.
M="$WORK/msgs"
mkdir -p "$M"
LIST="$WORK/list"
: >"$LIST"
: >"$WORK/expect"
# add FILE VERDICT
add() {
	echo "$1" >>"$LIST"
	echo "$2" >>"$WORK/expect"
}
plain() {
	printf 'From: Alice <alice@example.com>\nTo: rcpt@example.net\n'
	printf 'Subject: %s\nDate: Thu, 03 Dec 2026 10:00:00 +0000\n' "$1"
	printf 'Message-ID: <%s.%s@example.com>\n\n' "$1" $$
	printf '%s\n' "$2"
}
plain clean "Nothing to see here." >"$M/clean.eml"
add "$M/clean.eml" accept
printf 'Notes for the meeting.\n' >"$WORK/notes.txt"
mail_with_attachment notes.txt "$WORK/notes.txt" |
	sed 's/sender@example.com/alice@example.com/' >"$M/clean-mime.eml"
add "$M/clean-mime.eml" accept
plain eicar "$(eicar)" >"$M/eicar.eml"
add "$M/eicar.eml" reject
eicar >"$WORK/eicar.txt"
mail_with_attachment eicar.txt "$WORK/eicar.txt" |
	sed 's/sender@example.com/alice@example.com/' >"$M/eicar-att.eml"
add "$M/eicar-att.eml" reject
mail_with_attachment setup.exe "$WORK/notes.txt" |
	sed 's/sender@example.com/alice@example.com/' >"$M/rule-exe.eml"
add "$M/rule-exe.eml" reject
if [ -f "$TESTFILES/clam.zip" ]; then
	mail_with_attachment clam.zip "$TESTFILES/clam.zip" |
		sed 's/sender@example.com/alice@example.com/' >"$M/clam-zip.eml"
	add "$M/clam-zip.eml" reject
fi
plain clean2 "A second clean one, the list is not all viruses." \
	>"$M/clean2.eml"
add "$M/clean2.eml" accept

if [ "$AUTH" -eq 1 ]; then
	. "$SRCDIR/tests/dns.sh"
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
		-out "$WORK/rsa.pem" 2>/dev/null
	P_RSA=$(openssl pkey -in "$WORK/rsa.pem" -pubout -outform DER |
		base64 -w0)
	dns_zone example.com <<EOZ
@ TXT "v=spf1 ip4:192.0.2.0/24 -all"
mail A 192.0.2.10
mail TXT "v=spf1 a -all"
_dmarc TXT "v=DMARC1; p=reject"
rsa._domainkey TXT $(dns_split_txt "v=DKIM1; k=rsa; p=$P_RSA")
EOZ
	dns_zone example.org <<EOZ
@ TXT "v=spf1 -all"
_dmarc TXT "v=DMARC1; p=reject"
EOZ
	dns_zone example.net <<EOZ
_dmarc TXT "v=DMARC1; p=none"
EOZ
	dns_start
	ok $? "knotd serves the test zones"
	plain signed "Signed with rsa-sha256." |
		"$PY" "$SRCDIR/tests/dkim_sign.py" "$WORK/rsa.pem" rsa \
			example.com rsa-sha256 relaxed/relaxed >"$M/signed.eml"
	ok $? "a DKIM-signed message"
	add "$M/signed.eml" accept
	# From example.org (p=reject), neither signed nor aligned with the
	# envelope's example.com: DMARC fails.
	plain spoof "Please wire the money." |
		sed 's/alice@example.com/ceo@example.org/' >"$M/spoof.eml"
	add "$M/spoof.eml" reject
fi
L=$(wc -l <"$LIST")

# Two configurations, two rules files, two database folders. Each reload
# takes the other one: the same verdicts, different objects.
mkdir -p "$WORK/db-a" "$WORK/db-b"
cp "$SIGS"/* "$WORK/db-a/"
cp "$SIGS"/* "$WORK/db-b/"
# One more signature (bytes no test message carries) in the second.
echo "Edmilter.Test.Unused:0:*:65646d696c7465722d756e757365642d746573742d7369676e617475726521" \
	>"$WORK/db-b/extra.ndb"
cp "$SRCDIR/rules/baseline.rules" "$WORK/a.rules"
{
	cat "$SRCDIR/rules/baseline.rules"
	printf '\nrule never {\n    header "Subject" =~ /^zz-never-zz$/\n'
	printf '    => score 0.5\n}\n'
} >"$WORK/b.rules"
if [ "$AUTH" -eq 1 ]; then
	write_conf "$WORK/base.conf" "AuthChecks yes" \
		"Nameservers 127.0.0.1@$DNS_PORT" "DNSTimeout 3000" \
		"InternalHosts 10.0.0.0/8"
else
	write_conf "$WORK/base.conf"
fi
grep -v '^ClamAVDatabase' "$WORK/base.conf" >"$WORK/base.tmp"
# variant A|B: the config file of that variant, put in place at once.
variant() {
	{
		cat "$WORK/base.tmp"
		case $1 in
		a)
			echo "ClamAVDatabase $WORK/db-a"
			echo "RulesPath $WORK/a.rules"
			echo "MaxMessageSize 20M"
			;;
		b)
			echo "ClamAVDatabase $WORK/db-b"
			echo "RulesPath $WORK/b.rules"
			echo "MaxMessageSize 30M"
			echo "RejectMessage refused (b): virus found: %v"
			;;
		esac
	} >"$WORK/e.conf.tmp"
	mv "$WORK/e.conf.tmp" "$WORK/e.conf"
}
variant a
$RUN "$BUILDDIR/edmilter" -n -c "$WORK/e.conf" >"$WORK/check.log" 2>&1
rc=$?
ok $rc "the configuration checks (edmilter -n)"
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$WORK/check.log"

start_milter "$WORK/e.conf"
rc=$?
ok $rc "edmilter starts"
[ "$rc" -eq 0 ] || {
	done_testing
	exit 1
}

# reloads_done: reloads the log reports, taken or failed.
reloads_done() {
	grep -cE 'reloaded: |reload failed' "$MILTER_LOG"
}
# The reloader: the other variant, SIGUSR1, wait for that reload to end
# (so that no file changes under it), 0.2 s, again, until told to stop.
reloader() {
	n=0
	while [ ! -f "$WORK/stop-reloads" ]; do
		case $((n % 2)) in 0) variant b ;; *) variant a ;; esac
		before=$(reloads_done)
		kill -USR1 "$MILTER_PID" 2>/dev/null || break
		n=$((n + 1))
		i=0
		while [ "$(reloads_done)" -le "$before" ] && [ $i -lt 400 ]; do
			sleep 0.05
			i=$((i + 1))
		done
		sleep 0.2
	done
	echo "$n" >"$WORK/reloads"
}
reloader &
RELOADER=$!

# shellcheck disable=SC2086
$RUN "$GEN" -q -s "inet:$MILTER_PORT@127.0.0.1" -c "$CONNS" -m 10 -t "$SECS" \
	--ip 192.0.2.10 --helo mail.example.com --from bench@example.com \
	--rcpt rcpt@example.net "$LIST" >"$WORK/gen.out" 2>"$WORK/gen.err"
rc=$?
touch "$WORK/stop-reloads"
wait "$RELOADER"

# val KEY: one figure of miltergen's output.
val() {
	awk -v k="$1" '$1 == k { print $2 }' "$WORK/gen.out"
}
is "$rc" 0 "miltergen exits 0"
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$WORK/gen.err" | head -20
# miltergen hands out the messages of the list in turn: the first N of
# the endless list went out, whatever connection took them.
N=$(val messages)
like "$N" '^[1-9][0-9]{2,}$' "$N messages sent over $CONNS connections"
is "$(val final_replies)" "$N" "a final reply for every message"
is "$(val errors)" 0 "no connection or protocol error"
for v in accept reject quarantine tempfail discard; do
	want=$(awk -v n="${N:-0}" -v l="$L" -v v="$v" \
		'$1 == v { c += int(n / l) + (NR - 1 < n % l) }
		END { print c + 0 }' "$WORK/expect")
	is "$(val verdict_$v)" "$want" "verdict $v: $want"
done
is "$(grep -c ' verdict=' "$MILTER_LOG")" "$N" "one log line per message"

alive=0
kill -0 "$MILTER_PID" 2>/dev/null || alive=1
ok $alive "edmilter is alive after the load"
reloads=$(cat "$WORK/reloads" 2>/dev/null || echo 0)
like "$reloads" '^([5-9]|[1-9][0-9]+)$' "reloads under load: $reloads"
is "$(grep -c 'reloaded: ' "$MILTER_LOG")" "$reloads" "every reload taken"
like "$(grep 'reloaded: ' "$MILTER_LOG" | sed 's/.*reloaded: //' |
	sort -u | tr '\n' ' ')" '^2 signatures 3 signatures $' \
	"both databases were swapped in"

# SIGTERM: the daemon drains and exits 0 (the sanitizers' own exit codes
# say a race or a leak was found).
kill -TERM "$MILTER_PID"
i=0
while kill -0 "$MILTER_PID" 2>/dev/null && [ $i -lt 900 ]; do
	sleep 0.1
	i=$((i + 1))
done
kill -KILL "$MILTER_PID" 2>/dev/null
wait "$MILTER_PID"
rc=$?
MILTER_PID=""
is "$rc" 0 "edmilter exits 0 after SIGTERM"
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
	"$MILTER_LOG"; then
	ok 1 "no AddressSanitizer, LeakSanitizer or UBSan report"
	grep -A30 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
		"$MILTER_LOG" | head -60 | sed 's/^/#   /'
else
	ok 0 "no AddressSanitizer, LeakSanitizer or UBSan report"
fi

if [ "$TSAN" -eq 1 ]; then
	reports=$(cat "$WORK"/tsan/report.* 2>/dev/null |
		grep -c 'WARNING: ThreadSanitizer')
	is "$reports" 0 "no ThreadSanitizer report"
	if [ "$reports" -ne 0 ]; then
		cat "$WORK"/tsan/report.* | head -150 | sed 's/^/#   /'
		if [ -n "${TSAN_KEEP:-}" ]; then
			mkdir -p "$TSAN_KEEP"
			cp "$WORK"/tsan/report.* "$TSAN_KEEP"/
		fi
	fi
	fatal=$(grep -c 'FATAL: ThreadSanitizer' "$MILTER_LOG")
	is "$fatal" 0 "ThreadSanitizer ran (no FATAL at start)"
fi
if [ "$T_FAILED" -ne 0 ]; then
	echo "# edmilter's log (last 40 lines):"
	tail -40 "$MILTER_LOG" | sed 's/^/#   /'
fi
done_testing
