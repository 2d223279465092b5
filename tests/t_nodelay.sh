#!/bin/sh
# t_nodelay.sh: the connections libmilter accepts on a TCP socket get
# TCP_NODELAY, and TCP_QUICKACK after every read (milter/sock.c), seen
# from outside with strace: without them every header change after the
# first waits for the MTA's delayed ACK, and every header the MTA sends
# after the first for ours.
. "$(dirname "$0")/lib.sh"

if ! command -v strace >/dev/null 2>&1; then
	skip "strace is not installed (Debian package strace)"
	done_testing
	exit
fi
CONF="$WORK/e.conf"
write_conf "$CONF"
TRACE="$WORK/trace"
start_milter "$CONF"
ok $? "edmilter starts"
strace -f -qq -e trace=setsockopt -o "$TRACE" -p "$MILTER_PID" &
STRACE_PID=$!
stop_strace() {
	kill "$STRACE_PID" 2>/dev/null
	wait "$STRACE_PID" 2>/dev/null
}
CLEANUP="stop_strace $CLEANUP"
# strace has attached when the file names the process' threads.
i=0
while [ ! -s "$TRACE" ] && [ $i -lt 50 ]; do
	[ -d "/proc/$STRACE_PID" ] || break
	grep -q "TracerPid:[[:space:]]*$STRACE_PID" "/proc/$MILTER_PID/status" \
		2>/dev/null && break
	sleep 0.1
	i=$((i + 1))
done
if ! grep -q "TracerPid:[[:space:]]*$STRACE_PID" "/proc/$MILTER_PID/status"; then
	skip "strace cannot attach here (ptrace not allowed): $(head -2 "$TRACE")"
	stop_milter
	done_testing
	exit
fi
out=$(/usr/bin/python3 - "$MILTER_PORT" "$SRCDIR/tests" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
import milterclient
c = milterclient.Conn(int(sys.argv[1]))
c.connect("client.example.org", "192.0.2.7")
c.helo("client.example.org")
c.mail("a@example.com")
c.rcpt("b@example.net")
c.header("Subject", "nodelay")
c.body(b"hello\r\n")
final, data, mods = c.eom()
print(final, len(mods))
c.close()
PY
)
like "$out" '^c [1-9]' "a message is accepted with its header changes"
i=0
while ! grep -q TCP_NODELAY "$TRACE" 2>/dev/null && [ $i -lt 30 ]; do
	sleep 0.1
	i=$((i + 1))
done
like "$(cat "$TRACE")" 'setsockopt\([0-9]+, SOL_TCP, TCP_NODELAY, \[1\], 4\) = 0' \
	"the accepted connection is set TCP_NODELAY"
# Each read of the connection is followed by TCP_QUICKACK on it: with the
# no-reply steps the MTA sends header after header and its Nagle waits
# for our acknowledgement of the one before.
fd=$(sed -n 's/.*setsockopt(\([0-9]*\), SOL_TCP, TCP_NODELAY, \[1\].*/\1/p' \
	"$TRACE" | head -1)
n=$(grep -c "setsockopt($fd, SOL_TCP, TCP_QUICKACK, \[1\], 4) = 0" "$TRACE")
like "$n" '^([5-9]|[1-9][0-9]+)$' \
	"quick acknowledgement set again after the reads ($n times on fd $fd)"
stop_strace
pid=$MILTER_PID
stop_milter
if kill -0 "$pid" 2>/dev/null; then
	ok 1 "the daemon is gone after the test"
else
	ok 0 "the daemon is gone after the test"
fi
done_testing
