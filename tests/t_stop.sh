#!/bin/sh
# t_stop.sh: SIGTERM while a message is half sent: the message still gets
# its verdict, a new connection meanwhile is tempfailed at connect (the
# MTA retries), the daemon exits 0.
. "$(dirname "$0")/lib.sh"

CONF="$WORK/e.conf"
write_conf "$CONF"
start_milter "$CONF"
ok $? "edmilter starts"
eicar >"$WORK/eicar.txt"
out=$(/usr/bin/python3 - "$MILTER_PORT" "$MILTER_PID" "$WORK/eicar.txt" \
	"$SRCDIR/tests" <<'PY'
import os, signal, sys, time
sys.path.insert(0, sys.argv[4])
import milterclient

port, pid = int(sys.argv[1]), int(sys.argv[2])
body = open(sys.argv[3], "rb").read()
c = milterclient.Conn(port)
c.connect("client.example.org", "192.0.2.7")
c.helo("helo.example.org")
c.macro("M", i="STOP1")
c.mail("a@example.com")
c.rcpt("b@example.net")
c.header("Subject", "half way")
c.body(b"first part of the body\r\n")
os.kill(pid, signal.SIGTERM)
time.sleep(1)
# While it drains, a new connection is turned away: the MTA tempfails.
try:
    n = milterclient.Conn(port, timeout=5)
    print("new=" + n.connect("client2.example.org", "192.0.2.8"))
    n.close()
except Exception as e:
    print("new=closed (%s)" % e)
time.sleep(5)   # longer than libmilter's own 5 s stop check
c.body(body + b"\r\n")
final, data, mods = c.eom()
print("final=%s reply=%s" % (final, data.rstrip(b"\0").decode()))
c.close()
PY
)
like "$out" 'final=y reply=550 5\.7\.0 message refused: virus found: Edmilter\.Test\.Eicar\.UNOFFICIAL' \
	"the message in flight at SIGTERM gets its verdict"
like "$out" 'new=t' "a new connection while draining is tempfailed at connect"
i=0
while kill -0 "$MILTER_PID" 2>/dev/null && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
wait "$MILTER_PID"
is "$?" 0 "the daemon exits 0"
like "$(grep 'STOP1: ' "$MILTER_LOG")" 'verdict=reject' \
	"its log line was written"
MILTER_PID=""
[ "$T_FAILED" -eq 0 ] || sed 's/^/#   /' "$MILTER_LOG"

# SIGTERM with a connection the MTA keeps open between messages (Postfix
# keeps one per SMTP session; libmilter never closes it for us): once no
# message is in flight the daemon closes it, exits 0, leaves no
# temporary folder, and (under the sanitizers) reports no leak.
mkdir -p "$WORK/tmp2"
sed "s|^TemporaryDirectory .*|TemporaryDirectory $WORK/tmp2|" "$CONF" \
	>"$WORK/open.conf"
: >"$WORK/milter.log"
start_milter "$WORK/open.conf"
ok $? "edmilter starts again"
/usr/bin/python3 - "$MILTER_PORT" "$SRCDIR/tests" <<'PY' &
import sys, time
sys.path.insert(0, sys.argv[2])
import milterclient
c = milterclient.Conn(int(sys.argv[1]))
c.connect("client.example.org", "192.0.2.7")
c.helo("helo.example.org")
c.mail("a@example.com")
c.rcpt("b@example.net")
c.header("Subject", "kept open")
c.body(b"hello\r\n")
c.eom()
time.sleep(30)
PY
HOLDER=$!
i=0
while ! grep -q 'verdict=' "$WORK/milter.log" && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
like "$(ls "$WORK/tmp2")" '^edmilter-clamav\.' "the engine's temporary folder is there"
kill -TERM "$MILTER_PID"
i=0
while kill -0 "$MILTER_PID" 2>/dev/null && [ $i -lt 150 ]; do
	sleep 0.1
	i=$((i + 1))
done
wait "$MILTER_PID"
is "$?" 0 "with a connection open, SIGTERM: exit 0"
is "$(ls "$WORK/tmp2")" "" "... and no temporary folder left behind"
like "$(grep -c 'stopping: closing 1 idle connections' "$WORK/milter.log")" \
	'^1$' "... the idle connection closed by the daemon"
is "$(grep -c 'connections still open' "$WORK/milter.log")" 0 \
	"... and its state freed"
if grep -Eq 'ERROR: (Leak|Address)Sanitizer' "$WORK/milter.log"; then
	ok 1 "... and no sanitizer report"
	grep -A20 'Sanitizer' "$WORK/milter.log" | head -30 | sed 's/^/#   /'
else
	ok 0 "... and no sanitizer report"
fi
MILTER_PID=""
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null

# A signal during start-up waits for the daemon to be ready: SIGUSR1
# while the engine still loads must not kill it. Between fork and the
# first line of main() no program can hold a signal, so the test waits
# until the process runs edmilter with SIGUSR1 blocked, then signals it
# at once, long before the engine is loaded.
write_conf "$WORK/early.conf"
"$EDMILTER" -f -c "$WORK/early.conf" >"$WORK/early.log" 2>&1 &
EARLY=$!
i=0
while [ $i -lt 2000 ]; do
	blk=$(sed -n 's/^SigBlk:[[:space:]]*//p' "/proc/$EARLY/status" \
		2>/dev/null)
	[ -n "$blk" ] && [ $((0x$blk & 0x200)) -ne 0 ] && break
	i=$((i + 1))
done
like "$(grep -c ' starting: socket ' "$WORK/early.log")" '^0$' \
	"the signal comes before the engine is loaded"
kill -USR1 "$EARLY"
sleep 2
if kill -0 "$EARLY" 2>/dev/null; then
	ok 0 "SIGUSR1 right after the start does not kill the daemon"
else
	ok 1 "SIGUSR1 right after the start does not kill the daemon"
	sed 's/^/#   /' "$WORK/early.log"
fi
kill -TERM "$EARLY" 2>/dev/null
i=0
while kill -0 "$EARLY" 2>/dev/null && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
kill -KILL "$EARLY" 2>/dev/null
wait "$EARLY"
is "$?" 0 "... and it stops on SIGTERM, exit 0"
done_testing
