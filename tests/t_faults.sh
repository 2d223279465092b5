#!/bin/sh
# t_faults.sh: the daemon under faults, each with the outcome it must give.
#
#  1. The ClamAV database missing, empty or corrupt at start (every message
#     tempfailed, the log says why, a database that appears later is
#     loaded by the interval check) and at reload, by SIGUSR1 and by the
#     interval (the running engine keeps scanning); a new signature put in
#     the folder is found after ClamAVCheckInterval.
#  2. The temporary directory gone (a file in its place) or full: 451,
#     never accepted unchecked, and scanning again once it is usable.
#  3. The DNS server down or slow, with AuthChecks: DMARC undecidable is
#     tempfailed, within a bounded time.
#  4. A broken rules file at an interval reload: the running rules stay.
#     (At SIGUSR1, through Postfix: tests/t_rules.sh.)
#  5. The MTA vanishing mid-message, 200 times in many places: the daemon
#     answers the next message, its descriptors and threads do not grow.
# Every daemon started is stopped by SIGTERM and must exit 0 (under the
# sanitizer build, an error or a leak makes that fail).
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
EICAR_SIG=Edmilter.Test.Eicar.UNOFFICIAL
FAULT_SIG=Edmilter.Test.Faults.UNOFFICIAL
M="$WORK/msgs"
mkdir -p "$M"

# conf_put FILE "Key Value": replaces the line of Key, or adds one.
conf_put() {
	grep -v "^${2%% *} " "$1" >"$1.new"
	echo "$2" >>"$1.new"
	mv "$1.new" "$1"
}

# up NAME ["Key Value"...]: a daemon with write_conf's config changed by
# these lines, its config $WORK/NAME.conf, its log $WORK/milter.log (the
# previous daemon is stopped in the background, its log kept as
# $WORK/ITSNAME.log).
RETIRED=""
up() {
	retire
	NAME=$1
	shift
	write_conf "$WORK/$NAME.conf"
	for l in "$@"; do conf_put "$WORK/$NAME.conf" "$l"; done
	: >"$WORK/milter.log"
	MARK=0
	start_milter "$WORK/$NAME.conf"
	ok $? "daemon $NAME starts"
}

# libmilter notices SIGTERM only after up to 5 s: daemons are stopped in
# the background and waited for at the end by reap.
retire() {
	[ -n "${MILTER_PID:-}" ] || return 0
	kill -TERM "$MILTER_PID" 2>/dev/null
	mv "$MILTER_LOG" "$WORK/$NAME.log"
	RETIRED="$RETIRED $NAME:$MILTER_PID"
	MILTER_PID=""
}
reap() {
	for r in $RETIRED; do
		pid=${r#*:}
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 400 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid"
		echo "${r%%:*}:$?" >>"$WORK/reaped"
	done
	RETIRED=""
}
CLEANUP="$CLEANUP reap"

# The log from the mark on; mark sets the mark at its end.
mark() { MARK=$(wc -l <"$MILTER_LOG"); }
since() { tail -n +$((MARK + 1)) "$MILTER_LOG"; }
# wait_log ERE [SECONDS]: polls the log past the mark (default 15 s).
wait_log() {
	n=$((${2:-15} * 10))
	i=0
	while [ $i -lt "$n" ]; do
		since | grep -Eq -- "$1" && return 0
		kill -0 "$MILTER_PID" 2>/dev/null || return 1
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
# log_line QID: the summary line of that message.
log_line() { grep -E "^[^ ]+ edmilter: $1: client=" "$MILTER_LOG"; }

# The MTA side, on tests/milterclient.py:
#   mc.py PORT send QID=FILE...  one connection per message; prints
#                                "QID LETTER SECONDS REPLY" for each
#   mc.py PORT storm N           N clients that vanish mid-session
# MC_IP, MC_HELO and MC_FROM set the client, its HELO and the sender.
cat >"$WORK/mc.py" <<'PY'
import os, random, socket, struct, sys, time
sys.path.insert(0, os.environ["TESTS"])
import milterclient

IP = os.environ.get("MC_IP", "192.0.2.7")
HELO = os.environ.get("MC_HELO", "helo.example.org")
FROM = os.environ.get("MC_FROM", "sender@example.com")


def parse(path):
    data = open(path, "rb").read().replace(b"\r\n", b"\n").decode("latin-1")
    head, _, body = data.partition("\n\n")
    hdrs = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and hdrs:
            hdrs[-1][1] += "\n" + line
        elif line:
            name, _, value = line.partition(":")
            hdrs.append([name, value.lstrip(" ")])
    return hdrs, body.replace("\n", "\r\n").encode("latin-1")


def start(port, qid, timeout=120):
    c = milterclient.Conn(port, timeout)
    c.connect("client.example.org", IP)
    c.helo(HELO)
    c.macro("M", i=qid)
    return c


def send(port, qid, path):
    hdrs, body = parse(path)
    t0 = time.time()
    try:
        c = start(port, qid)
        r = c.mail(FROM)
        if r not in "c-":
            return "%s early-mail:%s %.1f -" % (qid, r, time.time() - t0)
        c.rcpt("rcpt@example.net")
        for name, value in hdrs:
            c.header(name, value)
        c._step("N", b"")
        c.body(body)
        final, data, _ = c.eom()
        c.close()
        text = data.rstrip(b"\0").decode("latin-1") or "-"
    except Exception as e:
        final, text = "E", "%s: %s" % (type(e).__name__, e)
    return "%s %s %.1f %s" % (qid, final, time.time() - t0, text)


def vanish(c, rst):
    if rst:
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                       struct.pack("ii", 1, 0))
    c.s.close()


def storm(port, n, eicar):
    big = b"x" * 70 + b"\r\n"
    for i in range(n):
        kind, rst = i % 8, (i // 8) % 2 == 1
        c = start(port, "STORM%d" % i, 30)
        if kind == 0:                   # after HELO
            vanish(c, rst)
            continue
        c.mail(FROM)
        if kind == 1:                   # after MAIL
            vanish(c, rst)
            continue
        c.rcpt("rcpt@example.net")
        c.header("From", "Sender <sender@example.com>")
        if kind == 2:                   # inside a header packet
            c.s.sendall(struct.pack(">I", 200) + b"LSubject\0 cut sh")
            vanish(c, rst)
            continue
        c.header("Subject", "storm %d" % i)
        if kind == 3:                   # between headers
            vanish(c, rst)
            continue
        c._step("N", b"")
        if kind == 4:                   # inside a body packet
            c.s.sendall(struct.pack(">I", 60001) + b"B" + big * 300)
            vanish(c, rst)
            continue
        c.body(big * 2000)
        if kind == 5:                   # between body chunks
            vanish(c, rst)
            continue
        if kind == 7:
            c.body(eicar + b"\r\n")
        c._send(b"E")                   # end of message, reply unread
        vanish(c, rst)
        if kind == 6 and rst:
            time.sleep(0.01)


port = int(sys.argv[1])
if sys.argv[2] == "send":
    for a in sys.argv[3:]:
        qid, _, path = a.partition("=")
        print(send(port, qid, path), flush=True)
elif sys.argv[2] == "storm":
    storm(port, int(sys.argv[3]), open(sys.argv[4], "rb").read())
PY
export TESTS="$SRCDIR/tests"
mc() { "$PY" "$WORK/mc.py" "$MILTER_PORT" "$@"; }
# reply QID=FILE: "LETTER REPLY" of one message.
reply() { mc send "$1" | cut -d' ' -f2,4-; }

# The messages.
{
	printf 'From: Sender <sender@example.com>\nTo: rcpt@example.net\n'
	printf 'Subject: clean\nMessage-ID: <clean.%s@example.com>\n\n' $$
	printf 'Nothing to see here.\n'
} >"$M/clean.eml"
{
	printf 'From: Sender <sender@example.com>\nTo: rcpt@example.net\n'
	printf 'Subject: eicar\nMessage-ID: <eicar.%s@example.com>\n\n' $$
	eicar
	echo
} >"$M/eicar.eml"
eicar >"$WORK/eicar.com"
# A file of our own and a .hdb signature for it (md5:size:name).
printf 'edmilter fault test payload %s\n' "$$" >"$WORK/payload.bin"
mail_with_attachment payload.bin "$WORK/payload.bin" >"$M/payload.eml"
FAULT_HDB="$(md5sum <"$WORK/payload.bin" | cut -d' ' -f1):$(wc -c <"$WORK/payload.bin" | tr -d ' '):Edmilter.Test.Faults"
sed 's/^Subject: clean$/Subject: please block me/' "$M/clean.eml" \
	>"$M/blockme.eml"

UNCHECKED='^y 451 4\.[0-9]\.[0-9]+ '
REJECT_EICAR="y 550 5.7.0 message refused: virus found: $EICAR_SIG"
REJECT_FAULT="y 550 5.7.0 message refused: virus found: $FAULT_SIG"

# --- 1. The database at start. ---
# A bad database does not stop the daemon: it starts, says why, and
# tempfails every message until a database loads (SIGUSR1 or the interval)
# rather than refusing to start and leaving the MTA with no filter.
mkdir -p "$WORK/db.empty" "$WORK/db.nosig" "$WORK/db.cvd" "$WORK/db.ndb"
: >"$WORK/db.nosig/empty.ndb"
{
	printf 'ClamAV-VDB:03 Dec 2026 10-00 +0000:99:100:90:garbled:x:y:1700000000'
	head -c 400 /dev/zero | tr '\0' ' '
	head -c 3000 /dev/urandom
} >"$WORK/db.cvd/main.cvd"
cp "$SIGS/edmilter-test.ndb" "$WORK/db.ndb/"
printf 'Edmilter.Test.Bad:0:*:4142zz\n' >>"$WORK/db.ndb/edmilter-test.ndb"
for db in missing empty nosig cvd ndb; do
	up "start-$db" "ClamAVDatabase $WORK/db.$db" "ClamAVCheckInterval 1"
	like "$(reply "S$db-1=$M/clean.eml")" "$UNCHECKED" \
		"database $db at start: a clean message gets 451"
	like "$(reply "S$db-2=$M/eicar.eml")" "$UNCHECKED" \
		"database $db at start: EICAR gets 451"
	like "$(log_line "S$db-1")" 'clamav=error .*verdict=tempfail ' \
		"database $db at start: logged as not scanned, tempfailed"
	case $db in
	empty) why='no database file in it \(run freshclam' ;;
	*) why='(cannot load the database: .+|the database holds no signature)' ;;
	esac
	like "$(grep "$WORK/db.$db: " "$MILTER_LOG" | head -1)" \
		"$WORK/db\.$db: $why" "database $db at start: the log says why"
done
# A daemon has no stderr: libclamav's own words come to the log.
like "$(grep 'libclamav: ' "$MILTER_LOG")" \
	"libclamav: Problem parsing database at line 3" \
	"malformed .ndb at start: the log names the line ..."
like "$(grep 'libclamav: ' "$MILTER_LOG")" \
	"libclamav: Can.t load $WORK/db\.ndb/edmilter-test\.ndb: Malformed database" \
	"... and the file"
# The last one started without a database; fixed, the interval loads it.
mark
cp "$SIGS/edmilter-test.ndb" "$WORK/db.ndb/"
wait_log 'reloaded: 2 signatures'
ok $? "a database fixed after start is loaded by the interval check"
like "$(since | grep 'database changed')" "$WORK/db\.ndb: database changed, reloading" \
	"the log says why it reloads"
is "$(reply "Sfixed=$M/eicar.eml")" "$REJECT_EICAR" \
	"then EICAR is refused with its signature"

# --- 1b. The database broken under a running daemon. ---
RDB="$WORK/rdb"
mkdir -p "$RDB"
cp "$SIGS/edmilter-test.ndb" "$RDB/"
cat >"$WORK/r.rules" <<'EOR'
rule block-subject { subject =~ /block me/ => reject 550 5.7.1 "blocked by rule" }
EOR
up reload "ClamAVDatabase $RDB" "ClamAVCheckInterval 0" \
	"RulesPath $WORK/r.rules"
RCONF="$WORK/reload.conf"
is "$(reply R0=$M/eicar.eml)" "$REJECT_EICAR" "running: EICAR refused"

# SIGUSR1 with a malformed signature file in the folder.
printf 'Edmilter.Test.Bad:0:*:4142zz\n' >"$RDB/bad.ndb"
mark
kill -USR1 "$MILTER_PID"
wait_log 'database reload failed|reload failed'
like "$(since)" "$RDB: cannot load the database: [^;]+; keeping the running database" \
	"SIGUSR1, malformed database: the log says why and keeps the engine"
like "$(since)" 'the running database kept \(2 signatures\)' \
	"SIGUSR1, malformed database: the reload result says so"
like "$(since | grep 'libclamav: ')" "libclamav: Can.t load $RDB/bad\.ndb: " \
	"SIGUSR1, malformed database: the log names the file"
is "$(reply R1=$M/eicar.eml)" "$REJECT_EICAR" \
	"SIGUSR1, malformed database: EICAR still refused"
like "$(reply R2=$M/clean.eml)" '^[ca] ' \
	"SIGUSR1, malformed database: a clean message still accepted"

# SIGUSR1 with the folder gone.
mv "$RDB" "$RDB.away"
mark
kill -USR1 "$MILTER_PID"
wait_log 'database reload failed|reload failed'
like "$(since)" "$RDB: cannot load the database: " \
	"SIGUSR1, database folder gone: the log says why"
is "$(reply R3=$M/eicar.eml)" "$REJECT_EICAR" \
	"SIGUSR1, database folder gone: EICAR still refused"
mv "$RDB.away" "$RDB"
rm -f "$RDB/bad.ndb"

# A reload turns the interval on.
conf_put "$RCONF" "ClamAVCheckInterval 1"
mark
kill -USR1 "$MILTER_PID"
wait_log 'reloaded: 2 signatures'
ok $? "SIGUSR1 with the database fixed: reloaded"

# The interval, with a malformed file added.
printf 'Edmilter.Test.Bad:0:*:4142zz\n' >"$RDB/bad.ndb"
mark
wait_log 'database reload failed'
ok $? "interval, malformed database: a reload is tried and fails"
like "$(since | grep 'database changed')" "$RDB: database changed, reloading" \
	"interval: logged at the change"
like "$(since)" "$RDB: cannot load the database: [^;]+; keeping the running database" \
	"interval, malformed database: the log says why"
is "$(reply R4=$M/eicar.eml)" "$REJECT_EICAR" \
	"interval, malformed database: EICAR still refused"
like "$(reply R5=$M/clean.eml)" '^[ca] ' \
	"interval, malformed database: a clean message still accepted"
# Tried once per change, not at every interval.
mark
sleep 2.5
is "$(since | grep -c 'reloading')" 0 "a failed database is not retried unchanged"

# Fixed, with a new signature: found after the interval.
like "$(reply R6=$M/payload.eml)" '^[ca] ' \
	"the test payload is clean before its signature is added"
mark
rm -f "$RDB/bad.ndb"
echo "$FAULT_HDB" >"$RDB/faults.hdb"
wait_log 'reloaded: 3 signatures'
ok $? "interval: the fixed database with a new signature is loaded"
is "$(reply R7=$M/payload.eml)" "$REJECT_FAULT" \
	"interval: the new signature is found"
is "$(reply R8=$M/eicar.eml)" "$REJECT_EICAR" "interval: EICAR still found"

# --- 4. A broken rules file and a bad config at an interval reload. ---
mark
printf 'rule broken {\n    subjectx =~ /x/ => reject "no"\n}\n' >>"$WORK/r.rules"
printf 'Edmilter.Test.Late:0:*:6c6174652d7369676e6174757265\n' >"$RDB/late.ndb"
wait_log 'reload failed: keeping the running configuration'
ok $? "interval, broken rules: the reload fails"
like "$(since)" "r\.rules:3:[0-9]+: unknown target \"subjectx\"" \
	"interval, broken rules: the log names file and line"
is "$(reply R9=$M/blockme.eml)" "y 550 5.7.1 blocked by rule" \
	"interval, broken rules: the running rule still refuses"
# The new database waits for a good config: retried at each interval.
mark
echo "NoSuchKey yes" >>"$RCONF"
sed -i '/^rule broken/,$d' "$WORK/r.rules"
wait_log 'unknown key "NoSuchKey"'
like "$(since)" "reload\.conf:[0-9]+: unknown key \"NoSuchKey\"" \
	"interval, bad config: the log names file and line"
is "$(reply R10=$M/eicar.eml)" "$REJECT_EICAR" \
	"interval, bad config: the running engine still scans"
sed -i '/^NoSuchKey/d' "$RCONF"
mark
wait_log 'reloaded: 4 signatures'
ok $? "config fixed: the waiting database change is loaded"
is "$(reply R11=$M/blockme.eml)" "y 550 5.7.1 blocked by rule" \
	"and the rules still apply"

# --- 2. The temporary directory. ---
T="$WORK/tmpd"
mkdir -p "$T"
up tmpdir "TemporaryDirectory $T"
like "$(reply T1=$M/clean.eml)" '^[ca] ' "temporary directory usable: accepted"
rm -rf "$T"
echo "not a directory" >"$T"
like "$(reply T2=$M/clean.eml)" "$UNCHECKED" \
	"temporary directory replaced by a file: 451"
like "$(reply T3=$M/eicar.eml)" "$UNCHECKED" \
	"temporary directory replaced by a file: EICAR 451 too"
like "$(log_line T2)" 'clamav=error .*verdict=tempfail ' \
	"temporary directory replaced by a file: logged unchecked, tempfail"
like "$(grep -E 'T2: .*temporary directory' "$MILTER_LOG" | head -1)" \
	'temporary directory [^ ]+: Not a directory' \
	"temporary directory replaced by a file: the log says why"
rm -f "$T"
mkdir "$T"
is "$(reply T4=$M/eicar.eml)" "$REJECT_EICAR" \
	"temporary directory back: scanning again"

FULL="$WORK/full"
mkdir -p "$FULL"
if [ "$(id -u)" -eq 0 ] &&
	mount -t tmpfs -o size=20m tmpfs "$FULL" 2>/dev/null; then
	unmount_full() { umount "$FULL" 2>/dev/null; }
	CLEANUP="$CLEANUP unmount_full"
	up full "TemporaryDirectory $FULL"
	is "$(reply F1=$M/eicar.eml)" "$REJECT_EICAR" \
		"temporary directory with room: scanning"
	dd if=/dev/zero of="$FULL/filler" bs=64k 2>/dev/null
	like "$(reply F2=$M/clean.eml)" "$UNCHECKED" \
		"temporary directory full: a clean message gets 451"
	like "$(reply F3=$M/eicar.eml)" "$UNCHECKED" \
		"temporary directory full: EICAR gets 451"
	like "$(log_line F2)" 'clamav=error .*verdict=tempfail ' \
		"temporary directory full: logged unchecked, tempfail"
	like "$(grep -E 'F2: .*temporary directory' "$MILTER_LOG" | head -1)" \
		'less than [0-9]+ bytes free' \
		"temporary directory full: the log says why"
	rm -f "$FULL/filler"
	like "$(reply F4=$M/clean.eml)" '^[ca] ' \
		"temporary directory freed: accepted again"
	retire
	reap
	umount "$FULL"
else
	skip "temporary directory full: needs root and a tmpfs mount"
fi

# --- 3. DNS down and slow, with AuthChecks. ---
# (tests/t_auth.sh: a silent server through edmilter-scan.)
msg_dns() {
	printf 'From: CEO <ceo@example.com>\nTo: rcpt@example.net\n'
	printf 'Subject: dns\nMessage-ID: <dns.%s@example.com>\n\nHello.\n' $$
}
msg_dns >"$M/dns.eml"
if [ -r /usr/share/publicsuffix/effective_tld_names.dat ]; then
	CLOSED=$("$PY" -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
	up dns-down "AuthChecks yes" "Nameservers 127.0.0.1@$CLOSED" \
		"DNSTimeout 1000" "InternalHosts 10.0.0.0/8"
	out=$(MC_IP=198.51.100.7 MC_HELO=mx.example.net \
		MC_FROM=a@example.net mc send D1="$M/dns.eml")
	like "$(echo "$out" | cut -d' ' -f2,4-)" '^y 451 4\.[0-9]\.[0-9]+ ' \
		"DNS down: 451"
	s=$(echo "$out" | cut -d' ' -f3)
	ok "$(awk -v s="$s" 'BEGIN { exit !(s < 20) }'; echo $?)" \
		"DNS down: answered in ${s}s (bound 20 s)"
	like "$(log_line D1)" 'dmarc=temperror .*verdict=tempfail ' \
		"DNS down: logged dmarc=temperror, tempfail"

	# A server that answers every query 3 s late (DNSTimeout is 1 s).
	SLOW=$(free_port)
	"$PY" - "$SLOW" <<'PY' >"$WORK/slowdns.log" 2>&1 &
import socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
def late(q, peer):
    # NOERROR, no answer: the question echoed, QR and RA set.
    s.sendto(q[:2] + b"\x81\x80" + q[4:6] + b"\0\0\0\0\0\0" + q[12:], peer)
while True:
    q, peer = s.recvfrom(4096)
    if len(q) > 12:
        threading.Timer(3.0, late, (q, peer)).start()
PY
	SLOW_PID=$!
	stop_slow() { kill "$SLOW_PID" 2>/dev/null; wait "$SLOW_PID" 2>/dev/null; }
	CLEANUP="stop_slow $CLEANUP"
	up dns-slow "AuthChecks yes" "Nameservers 127.0.0.1@$SLOW" \
		"DNSTimeout 1000" "InternalHosts 10.0.0.0/8"
	out=$(MC_IP=198.51.100.7 MC_HELO=mx.example.net \
		MC_FROM=a@example.net mc send D2="$M/dns.eml")
	like "$(echo "$out" | cut -d' ' -f2,4-)" '^y 451 4\.[0-9]\.[0-9]+ ' \
		"DNS slow: 451"
	s=$(echo "$out" | cut -d' ' -f3)
	ok "$(awk -v s="$s" 'BEGIN { exit !(s < 20) }'; echo $?)" \
		"DNS slow: answered in ${s}s (bound 20 s)"
	like "$(log_line D2)" 'dmarc=temperror .*verdict=tempfail ' \
		"DNS slow: logged dmarc=temperror, tempfail"
	stop_slow
else
	skip "DNS faults: no public suffix list (Debian package publicsuffix)"
fi

# --- 5. The MTA vanishing mid-message. ---
up vanish
is "$(reply V0=$M/eicar.eml)" "$REJECT_EICAR" "before: EICAR refused"
fds() { ls "/proc/$MILTER_PID/fd" | wc -l; }
threads() { sed -n 's/^Threads:[[:space:]]*//p' "/proc/$MILTER_PID/status"; }
fd0=$(fds)
th0=$(threads)
mc storm 200 "$WORK/eicar.com" 2>"$WORK/storm.err"
ok $? "200 clients vanished mid-session"
[ -s "$WORK/storm.err" ] && sed 's/^/#   /' "$WORK/storm.err" | head -10
kill -0 "$MILTER_PID" 2>/dev/null
ok $? "the daemon is still running"
is "$(reply V1=$M/eicar.eml)" "$REJECT_EICAR" "after: EICAR refused"
like "$(reply V2=$M/clean.eml)" '^[ca] ' "after: a clean message accepted"
# Descriptors and threads settle back (libmilter closes its side late).
i=0
while [ "$(fds)" -gt $((fd0 + 4)) ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
fd1=$(fds)
th1=$(threads)
ok "$([ "$fd1" -le $((fd0 + 4)) ] && echo 0 || echo 1)" \
	"descriptors do not grow: $fd0 before, $fd1 after"
ok "$([ "$th1" -le $((th0 + 8)) ] && echo 0 || echo 1)" \
	"threads do not grow: $th0 before, $th1 after"
retire
i=0
while ! grep -q 'stopping: ' "$WORK/vanish.log" && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
like "$(grep 'stopping: ' "$WORK/vanish.log")" 'stopping: 0 messages in flight' \
	"no vanished message is still counted in flight"

# --- Every daemon stops on SIGTERM, exit 0, nothing reported. ---
reap
for r in $(cat "$WORK/reaped"); do
	n=${r%%:*}
	is "${r#*:} $(grep -c ' edmilter: stopped$' "$WORK/$n.log")" "0 1" \
		"daemon $n: SIGTERM stops it, exit 0, 'stopped' logged"
	bad=$(grep -E 'ERROR: AddressSanitizer|LeakSanitizer|runtime error:' \
		"$WORK/$n.log" | head -3)
	is "$bad" "" "daemon $n: no sanitizer report"
done
if [ "$T_FAILED" -ne 0 ]; then
	for f in "$WORK"/*.log; do
		echo "# --- $f"
		tail -n 30 "$f" | sed 's/^/#   /'
	done
fi
done_testing
