#!/bin/sh
# t_trim.sh: once the last message in flight has ended, the daemon gives
# the allocator's free pages back to the system within a few seconds, off
# the message path (the reload thread, every 2 s), whatever
# ClamAVCheckInterval is: 0 (never checked), 1 (a check every second,
# sooner than the 2 s of the trim) and the default 600. LogDebug shows it
# as "idle: free memory given back"; nothing while no message has run.
# (A clean message ends with CONTINUE at end of message: "c".)
. "$(dirname "$0")/lib.sh"

# one_message [HOLD]: one clean message, its final reply printed; the
# connection kept open HOLD seconds after it (0).
one_message() {
	/usr/bin/python3 - "$MILTER_PORT" "$SRCDIR/tests" "${1:-0}" <<'PY'
import sys, time
sys.path.insert(0, sys.argv[2])
import milterclient
c = milterclient.Conn(int(sys.argv[1]))
c.connect("client.example.org", "192.0.2.7")
c.helo("helo.example.org")
c.mail("a@example.com")
c.rcpt("b@example.net")
c.header("Subject", "trim")
c.body(b"hello\r\n")
final, data, mods = c.eom()
print("final=%s" % final, flush=True)
time.sleep(float(sys.argv[3]))
c.close()
PY
}

# given_back N [COUNT]: waits up to N seconds for COUNT (1) debug lines;
# 0 when seen.
given_back() {
	i=0
	while [ $i -lt $(($1 * 10)) ]; do
		[ "$(grep -c 'idle: free memory given back' "$MILTER_LOG")" \
			-ge "${2:-1}" ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

for every in 0 1 600; do
	write_conf "$WORK/e$every.conf" "LogDebug yes" \
		"ClamAVCheckInterval $every"
	: >"$WORK/milter.log"
	start_milter "$WORK/e$every.conf"
	ok $? "ClamAVCheckInterval $every: edmilter starts"
	sleep 3
	given_back 0
	[ $? -ne 0 ]
	ok $? "ClamAVCheckInterval $every: nothing given back before a message"
	like "$(one_message)" 'final=c' \
		"ClamAVCheckInterval $every: a clean message is accepted"
	given_back 10
	ok $? "ClamAVCheckInterval $every: free memory given back once idle"
	stop_milter
	[ "$T_FAILED" -eq 0 ] || sed 's/^/#   /' "$MILTER_LOG"
done

# A connection the MTA keeps open holds its buffers past its message: when
# it closes, with no message in flight, they are given back too.
write_conf "$WORK/hold.conf" "LogDebug yes"
: >"$WORK/milter.log"
start_milter "$WORK/hold.conf"
ok $? "edmilter starts"
one_message 5 >"$WORK/hold.out" &
given_back 10
ok $? "given back once the message has ended, its connection still open"
wait $!
like "$(cat "$WORK/hold.out")" 'final=c' "the message is accepted"
given_back 10 2
ok $? "given back again once the connection has closed"
stop_milter
[ "$T_FAILED" -eq 0 ] || sed 's/^/#   /' "$MILTER_LOG"
done_testing
