#!/bin/sh
# t_check.sh: the daemon started without -f, and what -n checks.
#
#  1. Started as a daemon from a folder with a relative -c, whose relative
#     paths (the database, the temporary folder, the pid file, the rules)
#     are taken from the config's folder: it serves, reloads on SIGUSR1,
#     and stops, removing its pid file; -n from another folder agrees.
#  2. A start that fails after the fork: exit 1, the reason on stderr (or
#     a word that the log has it), no pid file, no socket file.
#  3. -n refuses what the daemon would fail on: a missing or unusable
#     TemporaryDirectory, a SocketGroup that does not exist (and the
#     daemon leaves no socket behind), a PidFile in a missing folder.
#  4. -n refuses a NUL byte in a line and an AuthservID with a control or
#     an 8-bit byte, naming file and line.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
export TESTS="$SRCDIR/tests"

# conf_put FILE "Key Value": replaces the line of Key, or adds one.
conf_put() {
	grep -v "^${2%% *} " "$1" >"$1.new"
	echo "$2" >>"$1.new"
	mv "$1.new" "$1"
}

# alive PID: the process is there and not a zombie.
alive() {
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	case "$st" in "" | Z*) return 1 ;; esac
	return 0
}

# Daemons started here, stopped by the exit trap if a test failed first.
DAEMONS=""
kill_daemons() {
	for p in $DAEMONS; do
		kill -KILL "$p" 2>/dev/null
	done
}
CLEANUP="$CLEANUP kill_daemons"

# gone PID: waits up to 15 s for the process to end (libmilter notices
# SIGTERM only after up to 5 s).
gone() {
	i=0
	while alive "$1" && [ $i -lt 150 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	! alive "$1"
}

# send FILE: one message over the milter to $MILTER_PORT; prints the
# final reply letter and its text.
cat >"$WORK/send.py" <<'PY'
import os, sys
sys.path.insert(0, os.environ["TESTS"])
import milterclient

port, path = int(sys.argv[1]), sys.argv[2]
head, _, body = open(path, "rb").read().decode("latin-1").partition("\n\n")
c = milterclient.Conn(port, 60)
c.connect("client.example.org", "192.0.2.7")
c.helo("helo.example.org")
c.macro("M", i="QCHECK")
c.mail("sender@example.com")
c.rcpt("rcpt@example.net")
for line in head.split("\n"):
    name, _, value = line.partition(":")
    c.header(name, value.lstrip(" "))
c._step("N", b"")
c.body(body.replace("\n", "\r\n").encode("latin-1"))
final, data, _ = c.eom()
c.close()
print(final, data.rstrip(b"\0").decode("latin-1"))
PY
send() { timeout 60 "$PY" "$WORK/send.py" "$MILTER_PORT" "$1" 2>&1; }

{
	printf 'From: Sender <sender@example.com>\nTo: rcpt@example.net\n'
	printf 'Subject: eicar\n\nThe test string follows.\n'
	eicar
	echo
} >"$WORK/eicar.eml"
REJECT_EICAR='^y 550 5\.7\.0 message refused: virus found: Edmilter\.Test\.Eicar'

# --- 1. A daemon with a relative -c and relative paths in the config. ---
R="$WORK/rel"
mkdir -p "$R/tmp" "$R/run"
ln -s "$SIGS" "$R/sigs"
cp "$SRCDIR/rules/baseline.rules" "$R/local.rules"
write_conf "$R/rel.conf"
conf_put "$R/rel.conf" "ClamAVDatabase sigs"
conf_put "$R/rel.conf" "TemporaryDirectory tmp"
conf_put "$R/rel.conf" "PidFile run/edmilter.pid"
conf_put "$R/rel.conf" "RulesPath local.rules"

out=$(cd / && "$EDMILTER" -n -c "$R/rel.conf" 2>&1)
is "$? $out" "0 configuration OK" \
	"-n from /: relative paths are taken from the config's folder"
out=$(cd "$R/run" && "$EDMILTER" -n -c ../rel.conf 2>&1)
is "$? $out" "0 configuration OK" "-n with a relative -c from another folder"

out=$(cd "$R" && timeout 60 "$EDMILTER" -c rel.conf 2>&1)
rc=$?
pid=$(cat "$R/run/edmilter.pid" 2>/dev/null)
DAEMONS="$DAEMONS $pid"
like "$rc $out" '^0 .*starting: socket ' \
	"cd DIR && edmilter -c rel.conf: exit 0 once it serves (Syslog no: its start shown)"
like "$pid" '^[0-9]+$' "the pid file is written, in the config's folder"
like "$out" 'Syslog no without -f: nothing is logged from now on' \
	"Syslog no without -f: it says that the log ends there"
sleep 1
[ -n "$pid" ] && alive "$pid"
ok $? "the daemon is still up (it read its config again after chdir /)"
like "$(send "$WORK/eicar.eml")" "$REJECT_EICAR" \
	"the daemon serves: EICAR rejected with the database of the relative path"
t1=$(ls "$R/tmp")
like "$t1" '^edmilter-clamav\.[A-Za-z0-9]+$' \
	"the engine's private folder is made in the relative TemporaryDirectory"
[ -n "$pid" ] && kill -USR1 "$pid"
i=0
while [ $i -lt 150 ] && { [ "$(ls "$R/tmp")" = "$t1" ] || [ -z "$(ls "$R/tmp")" ]; }; do
	sleep 0.1
	i=$((i + 1))
done
t2=$(ls "$R/tmp")
like "$t2" '^edmilter-clamav\.[A-Za-z0-9]+$' \
	"SIGUSR1: reloaded from the same config and paths (one new engine folder)"
[ "$t1" != "$t2" ]
ok $? "SIGUSR1: the new engine replaced the old one"
like "$(send "$WORK/eicar.eml")" "$REJECT_EICAR" \
	"after the reload: EICAR still rejected"
[ -n "$pid" ] && kill -TERM "$pid"
gone "$pid"
ok $? "SIGTERM stops the daemon"
[ ! -e "$R/run/edmilter.pid" ]
ok $? "the daemon removes its pid file at stop"

# --- 2. A start that fails after the fork. ---
F="$WORK/fail"
mkdir -p "$F"
printf 'this is not a rule\n' >"$F/broken.rules"
write_conf "$F/fail.conf"
conf_put "$F/fail.conf" "Socket unix:$F/edmilter.sock"
conf_put "$F/fail.conf" "PidFile $F/edmilter.pid"
conf_put "$F/fail.conf" "RulesPath broken.rules"
out=$(cd "$F" && timeout 60 "$EDMILTER" -c fail.conf 2>&1)
is "$?" 1 "a start that fails after the fork: exit 1"
like "$out" "broken\.rules:1:1: expected \"rule\"" \
	"the reason is on stderr (Syslog no)"
like "$out" "the daemon ended while starting" "and that it did not start"
[ ! -e "$F/edmilter.pid" ] && [ ! -e "$F/edmilter.sock" ]
ok $? "no pid file and no socket file left behind"
conf_put "$F/fail.conf" "Syslog yes"
out=$(cd "$F" && timeout 60 "$EDMILTER" -c fail.conf 2>&1)
is "$? $out" "1 edmilter: the daemon ended while starting: its log says why" \
	"Syslog yes: exit 1, stderr points to the log"
[ ! -e "$F/edmilter.pid" ] && [ ! -e "$F/edmilter.sock" ]
ok $? "Syslog yes: no pid file and no socket file left behind"

# A pid file that cannot be written: the daemon is not left running
# unfindable; the start says so and fails.
write_conf "$F/nopid.conf"
conf_put "$F/nopid.conf" "Socket unix:$F/np.sock"
conf_put "$F/nopid.conf" "PidFile $F/nonexistent/e.pid"
out=$(timeout 60 "$EDMILTER" -c "$F/nopid.conf" 2>&1)
like "$?:$(printf '%s' "$out" | tr '\n' ' ')" '^1:.*cannot write the pid: .*the daemon is stopped: no pid file' \
	"a pid file that cannot be written: exit 1, the daemon stopped"
[ ! -e "$F/np.sock" ] && ! pgrep -f "$F/nopid.conf" >/dev/null
ok $? "... no daemon left, no socket file"

# The start interrupted (its database slow to load: a FIFO): the daemon
# is stopped as soon as it can be, never left running without a pid file.
mkdir -p "$F/slowdb"
mkfifo "$F/slowdb/slow.ndb"
write_conf "$F/slow.conf"
conf_put "$F/slow.conf" "Socket unix:$F/slow.sock"
conf_put "$F/slow.conf" "PidFile $F/slow.pid"
conf_put "$F/slow.conf" "ClamAVDatabase $F/slowdb"
timeout -k 5 60 "$EDMILTER" -c "$F/slow.conf" >"$F/slow.out" 2>&1 &
starter=$!
sleep 1
kill -INT "$starter"
sleep 0.5
# The folder's files may be read more than once: fed until all is over.
(while :; do cat "$SIGS"/*.ndb >"$F/slowdb/slow.ndb"; done) 2>/dev/null &
feeder=$!
wait "$starter"
rc=$?
like "$rc:$(tr '\n' ' ' <"$F/slow.out")" '^[1-9][0-9]*:.*the daemon is stopped: the start was interrupted' \
	"the start interrupted: exit non-zero, said"
i=0
while pgrep -f "$F/slow.conf" >/dev/null && [ $i -lt 150 ]; do
	sleep 0.1
	i=$((i + 1))
done
! pgrep -f "$F/slow.conf" >/dev/null && [ ! -e "$F/slow.pid" ] &&
	[ ! -e "$F/slow.sock" ]
ok $? "... no daemon left, no pid file, no socket file"
kill "$feeder" 2>/dev/null
wait "$feeder" 2>/dev/null
# A cat the loop left waiting for a reader: let it write and go.
timeout 2 cat "$F/slowdb/slow.ndb" >/dev/null 2>&1
rm -f "$F/slowdb/slow.ndb"

# A second start on the unix socket of a running daemon is refused (it
# would take the socket and leave the first serving nobody); the first
# keeps its socket and pid file; a stale socket file is taken over.
U="$WORK/twice"
mkdir -p "$U"
write_conf "$U/u.conf"
conf_put "$U/u.conf" "Socket unix:$U/e.sock"
conf_put "$U/u.conf" "PidFile $U/e.pid"
out=$(timeout 60 "$EDMILTER" -c "$U/u.conf" 2>&1)
is "$?" 0 "unix socket: the daemon starts"
first=$(cat "$U/e.pid" 2>/dev/null)
DAEMONS="$DAEMONS $first"
ino=$(stat -c %i "$U/e.sock")
out=$(timeout 60 "$EDMILTER" -c "$U/u.conf" 2>&1)
like "$?:$out" "^1:.*unix:$U/e\.sock: in use: another daemon serves it" \
	"a second start on the same unix socket: exit 1, and why"
is "$(stat -c %i "$U/e.sock") $(cat "$U/e.pid")" "$ino $first" \
	"the first daemon keeps its socket and its pid file"
kill -TERM "$first"
gone "$first"
[ ! -e "$U/e.sock" ] && [ ! -e "$U/e.pid" ]
ok $? "the first daemon removes both at stop"
"$PY" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])' "$U/e.sock"
out=$(timeout 60 "$EDMILTER" -c "$U/u.conf" 2>&1)
is "$?" 0 "a stale socket file (nobody listens) is taken over"
pid=$(cat "$U/e.pid" 2>/dev/null)
DAEMONS="$DAEMONS $pid"
kill -TERM "$pid"
gone "$pid"

# --- 3. What the daemon would meet at start. ---
C="$WORK/check.conf"
write_conf "$C"
conf_put "$C" "TemporaryDirectory $WORK/nonexistent"
out=$("$EDMILTER" -n -c "$C" 2>&1)
like "$?:$out" "^1:$C:[0-9]+: TemporaryDirectory: $WORK/nonexistent: No such file or directory\$" \
	"-n: a TemporaryDirectory not there, file:line"
: >"$WORK/afile"
conf_put "$C" "TemporaryDirectory $WORK/afile"
out=$("$EDMILTER" -n -c "$C" 2>&1)
like "$?:$out" "^1:$C:[0-9]+: TemporaryDirectory: $WORK/afile: not a folder\$" \
	"-n: a TemporaryDirectory that is a file"
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	# UserID must reach it: the work folder is private to its owner.
	chmod 711 "$WORK"
	mkdir -m 700 "$WORK/private"
	conf_put "$C" "TemporaryDirectory $WORK/private"
	conf_put "$C" "UserID nobody"
	out=$("$EDMILTER" -n -c "$C" 2>&1)
	like "$?:$out" "^1:$C:[0-9]+: TemporaryDirectory: $WORK/private: cannot make a folder in it: Permission denied \(as UserID nobody\)\$" \
		"-n: a TemporaryDirectory UserID cannot write to"
	chmod 1777 "$WORK/private"
	out=$("$EDMILTER" -n -c "$C" 2>&1)
	is "$? $out" "0 configuration OK" "-n: once UserID can write to it, OK"
	# The files in a readable folder, each: the folder says nothing of them.
	mkdir -m 755 "$WORK/udb" "$WORK/urules"
	cp "$SIGS"/*.ndb "$WORK/udb/"
	chmod 600 "$WORK/udb/"*.ndb
	printf 'rule a { subject =~ /x/ => score 1 }\n' >"$WORK/urules/a.rules"
	chmod 600 "$WORK/urules/a.rules"
	conf_put "$C" "ClamAVDatabase $WORK/udb"
	conf_put "$C" "RulesPath $WORK/urules"
	out=$("$EDMILTER" -n -c "$C" 2>&1)
	like "$?:$(printf '%s' "$out" | tr '\n' ' ')" "^1:$C:[0-9]+: ClamAVDatabase: $WORK/udb/[a-z.-]+\.ndb: Permission denied \(as UserID nobody\) $C:[0-9]+: RulesPath: $WORK/urules/a\.rules: Permission denied \(as UserID nobody\)" \
		"-n: a database file and a rules file UserID cannot read, each named"
	chmod 644 "$WORK/udb/"*.ndb "$WORK/urules/a.rules"
	out=$("$EDMILTER" -n -c "$C" 2>&1)
	is "$? $out" "0 configuration OK" "-n: once UserID can read them, OK"
	conf_put "$C" "ClamAVDatabase $SIGS"
	grep -v '^RulesPath ' "$C" >"$C.new" && mv "$C.new" "$C"
	conf_put "$C" "UserID root"
else
	skip "not root: a TemporaryDirectory UserID cannot write to"
	skip "not root: once UserID can write to it, OK"
	skip "not root: a database file and a rules file UserID cannot read"
	skip "not root: once UserID can read them, OK"
fi
conf_put "$C" "TemporaryDirectory $WORK"

conf_put "$C" "SocketGroup nosuchgroup"
out=$("$EDMILTER" -n -c "$C" 2>&1)
is "$? $out" "0 configuration OK" "-n: SocketGroup with an inet socket is unused"
conf_put "$C" "Socket unix:$WORK/g.sock"
out=$("$EDMILTER" -n -c "$C" 2>&1)
like "$?:$out" "^1:$C:[0-9]+: SocketGroup: no such group \"nosuchgroup\"\$" \
	"-n: a SocketGroup that does not exist, with a unix socket"
out=$(timeout 60 "$EDMILTER" -f -c "$C" 2>&1)
like "$?:$out" '^1:.*SocketGroup nosuchgroup: no such group' \
	"the daemon refuses it at start"
[ ! -e "$WORK/g.sock" ]
ok $? "and leaves no socket file behind"
conf_put "$C" "SocketGroup $(id -gn)"
conf_put "$C" "Socket inet:$(free_port)@127.0.0.1"

conf_put "$C" "PidFile $WORK/nonexistent/dir/edmilter.pid"
out=$("$EDMILTER" -n -c "$C" 2>&1)
like "$?:$out" "^1:$C:[0-9]+: PidFile: $WORK/nonexistent/dir: no such folder for the pid file\$" \
	"-n: a PidFile in a folder not there"
conf_put "$C" "PidFile $WORK"
out=$("$EDMILTER" -n -c "$C" 2>&1)
like "$?:$out" "^1:$C:[0-9]+: PidFile: $WORK: a folder, not a file\$" \
	"-n: a PidFile that is a folder"
conf_put "$C" "PidFile $WORK/edmilter.pid"
out=$("$EDMILTER" -n -c "$C" 2>&1)
is "$? $out" "0 configuration OK" "-n: all of them fixed, OK"

# --- 4. Bytes that would be cut or carried. ---
B="$WORK/bytes.conf"
# A TemporaryDirectory so long that libclamav's files below it would not
# fit (it then answers clean): refused; one at the longest allowed still
# finds the test program inside a zip inside the message.
long="$WORK/t"
while [ ${#long} -lt 1000 ]; do
	long="$long/$(printf 'd%.0s' $(seq 60))"
done
long=$(printf '%s' "$long" | cut -c1-1024)
mkdir -p "$long" "$long/$(printf 'e%.0s' $(seq 80))"
write_conf "$B"
conf_put "$B" "TemporaryDirectory $long/$(printf 'e%.0s' $(seq 80))"
out=$("$EDMILTER" -n -c "$B" 2>&1)
like "$?:$out" "^1:$B:[0-9]+: TemporaryDirectory: longer than 1024 bytes" \
	"-n: a TemporaryDirectory over 1024 bytes is refused"
conf_put "$B" "TemporaryDirectory $long"
out=$("$EDMILTER" -n -c "$B" 2>&1)
is "$? $out" "0 configuration OK" "-n: one of 1024 bytes is taken"
if [ -f /usr/share/clamav-testfiles/clam.zip ]; then
	{
		printf 'From: a@example.com\nTo: b@example.net\nSubject: z\n'
		printf 'MIME-Version: 1.0\nContent-Type: application/zip; name="c.zip"\n'
		printf 'Content-Transfer-Encoding: base64\n\n'
		base64 /usr/share/clamav-testfiles/clam.zip
	} >"$WORK/zip.eml"
	like "$("$EDMSCAN" -c "$B" "$WORK/zip.eml" 2>&1)" 'verdict: reject \(infected' \
		"... and the test program in a zip is found below it"
else
	skip "clamav-testfiles is not installed"
fi

# A socket another process holds: the reason, bind's, is said.
write_conf "$B"
"$PY" -c 'import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
time.sleep(20)' "$MILTER_PORT" &
holder=$!
sleep 0.5
out=$(timeout 30 "$EDMILTER" -f -c "$B" 2>&1)
like "$?:$out" "^1:.*inet:$MILTER_PORT@127\.0\.0\.1: cannot open the milter socket \(Address already in use\)" \
	"a socket in use: exit 1, and why"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null

write_conf "$B"
n=$(($(wc -l <"$B") + 1))
printf 'OnInfected accept\000reject\n' >>"$B"
out=$("$EDMILTER" -n -c "$B" 2>&1)
is "$? $out" "1 $B:$n: a NUL byte in the line" \
	"-n: a NUL byte in a line is an error, file:line"
write_conf "$B"
conf_put "$B" "AuthservID mx-1.example_2.test"
out=$("$EDMILTER" -n -c "$B" 2>&1)
is "$? $out" "0 configuration OK" "-n: AuthservID of letters, digits, . - _"
# Each as written, as the error shows it, and what it is.
for t in 'mx\001.test|mx\\x01\.test|a control byte' \
	'mx\351.test|mx\\xe9\.test|an 8-bit byte' \
	'mx\177.test|mx\\x7f\.test|DEL' 'mx.test!|mx\.test!|a !'; do
	raw=${t%%|*} rest=${t#*|}
	write_conf "$B"
	grep -v '^AuthservID ' "$B" >"$B.new"
	printf "AuthservID $raw\n" >>"$B.new"
	mv "$B.new" "$B"
	n=$(wc -l <"$B" | tr -d ' ')
	out=$("$EDMILTER" -n -c "$B" 2>&1)
	like "$?:$out" "^1:$B:$n: AuthservID: \"${rest%%|*}\" is not a host-name-like token" \
		"-n: AuthservID with ${rest#*|} refused, shown escaped, file:line"
done
done_testing
