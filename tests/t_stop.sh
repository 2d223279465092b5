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
done_testing
