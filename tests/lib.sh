# lib.sh: shared by the shell test suites. Sourced, never run.
#
# Gives TAP output (ok, skip, done_testing), a private work folder that is
# removed at exit, and start/stop of the real daemon on a free loopback
# port. Everything a suite starts is stopped by its exit trap.
set -u
: "${SRCDIR:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${BUILDDIR:=$SRCDIR}"
EDMILTER="$BUILDDIR/edmilter"
EDMSCAN="$BUILDDIR/edmilter-scan"
SIGS="$SRCDIR/tests/data/sigs"
TESTFILES=/usr/share/clamav-testfiles
SHARED="$SRCDIR/../shared"

T_N=0
T_FAILED=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edmtest.XXXXXX")
CLEANUP=""
at_exit() {
	for c in $CLEANUP; do $c; done
	rm -rf "$WORK"
}
trap at_exit EXIT
trap 'exit 1' HUP INT PIPE TERM

# ok COND-STATUS DESCRIPTION: "ok" when the status is 0.
ok() {
	T_N=$((T_N + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $T_N - $2"
	else
		echo "not ok $T_N - $2"
		T_FAILED=$((T_FAILED + 1))
	fi
}

# is GOT WANT DESCRIPTION
is() {
	if [ "$1" = "$2" ]; then ok 0 "$3"; else
		ok 1 "$3"
		echo "#   got '$1', want '$2'"
	fi
}

# like GOT REGEX DESCRIPTION (extended regular expression)
like() {
	if printf '%s' "$1" | grep -Eq -- "$2"; then ok 0 "$3"; else
		ok 1 "$3"
		echo "#   '$1' does not match /$2/" | head -5
	fi
}

skip() {
	T_N=$((T_N + 1))
	echo "ok $T_N # SKIP $1"
}

done_testing() {
	echo "1..$T_N"
	[ "$T_FAILED" -eq 0 ]
}

# A free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# write_conf FILE [extra "Key Value" lines...]: a config on a free port.
write_conf() {
	f=$1
	shift
	MILTER_PORT=$(free_port)
	{
		echo "Socket inet:$MILTER_PORT@127.0.0.1"
		echo "ClamAVDatabase $SIGS"
		echo "TemporaryDirectory $WORK"
		echo "AuthservID mx.test"
		echo "AllowRoot yes"
		echo "Syslog no"
		# Suites about other checks need no DNS: sender authentication
		# is off unless the suite speaks of it.
		case "$*" in
		*AuthChecks* | *Nameservers*) ;;
		*) echo "AuthChecks no" ;;
		esac
		for l in "$@"; do echo "$l"; done
	} >"$f"
}

# start_milter CONF: starts the daemon in the foreground, its log in
# $WORK/milter.log, and waits until it listens.
start_milter() {
	MILTER_LOG="$WORK/milter.log"
	"$EDMILTER" -f -c "$1" >>"$MILTER_LOG" 2>&1 &
	MILTER_PID=$!
	CLEANUP="$CLEANUP stop_milter"
	i=0
	while [ $i -lt 100 ]; do
		if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$MILTER_PORT),0.2)" 2>/dev/null; then
			return 0
		fi
		kill -0 "$MILTER_PID" 2>/dev/null || break
		sleep 0.1
		i=$((i + 1))
	done
	echo "# edmilter did not start:"
	sed 's/^/#   /' "$MILTER_LOG"
	return 1
}

stop_milter() {
	[ -n "${MILTER_PID:-}" ] || return 0
	kill -TERM "$MILTER_PID" 2>/dev/null
	i=0
	while kill -0 "$MILTER_PID" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$MILTER_PID" 2>/dev/null
	wait "$MILTER_PID" 2>/dev/null
	MILTER_PID=""
	# A sanitizer's report (a leak shows at exit) fails the suite.
	if grep -Eq 'ERROR: (Leak|Address)Sanitizer|runtime error:|WARNING: ThreadSanitizer' \
		"$MILTER_LOG" 2>/dev/null; then
		T_N=$((T_N + 1))
		T_FAILED=$((T_FAILED + 1))
		echo "not ok $T_N - edmilter's log has a sanitizer report:"
		grep -E -A12 'ERROR: (Leak|Address)Sanitizer|runtime error:|WARNING: ThreadSanitizer' \
			"$MILTER_LOG" | head -40 | sed 's/^/#   /'
	fi
}

# The EICAR test string, made from the test signature: no script carries it.
eicar() {
	python3 -c 'import sys; sys.stdout.write(bytes.fromhex(sys.argv[1]).decode())' \
		"$(sed -n 's/^Edmilter\.Test\.Eicar:0:\*://p' "$SIGS/edmilter-test.ndb")"
}

# mail_with_attachment NAME FILE: a MIME message carrying FILE in base64.
mail_with_attachment() {
	cat <<EOM
From: Sender <sender@example.com>
To: rcpt@example.net
Subject: attachment $1
Message-ID: <$1.$$@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="=-b1"

--=-b1
Content-Type: text/plain

See attached.

--=-b1
Content-Type: application/octet-stream; name="$1"
Content-Disposition: attachment; filename="$1"
Content-Transfer-Encoding: base64

$(base64 <"$2")
--=-b1--
EOM
}
