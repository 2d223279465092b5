#!/bin/sh
# e2e.sh: the end-to-end benchmark: SMTP in through a private Postfix,
# out to Postfix's smtp-sink, with and without milters.
#
#   sh tests/bench/e2e.sh            the full run (about 6 minutes)
#   sh tests/bench/e2e.sh --smoke    a few messages through (a) and (b)
#
# One Postfix instance per configuration (tests/postfix.sh: its own
# config_directory, queue on /dev/shm, loopback only, no chroot), relaying
# everything for example.net to smtp-sink on another loopback port, which
# counts and discards. Configurations, measured in the same run on the
# same messages at the same concurrency (64 SMTP sessions):
#
#   a        Postfix alone, no milter;
#   b-inet   Postfix + edmilter on inet:PORT@127.0.0.1 (every check on:
#            ClamAV, SPF, DKIM, DMARC against a loopback Knot server,
#            rules/baseline.rules; 127.0.0.1 is not an internal host);
#   b-unix   the same, edmilter on a unix socket;
#   c        Postfix + the peer chain of tests/bench/peers.sh
#            (clamav-milter and clamd, opendkim, opendmarc), when that
#            file and its packages are there;
#   b-inet-low, b-unix-low   b-inet and b-unix at 4 sessions, where the
#            TCP delayed ACK on the inet socket shows.
#
# The messages are those of tests/bench/run.sh: the SpamAssassin public
# corpus (its mbox "From " lines removed, since over SMTP they would end
# the header), a quarter of it DKIM-signed copies, and the ClamAV test
# program in four containers. Postfix's smtp-source sends them: it sends
# one file per process, so xargs runs 64 of them at a time, one SMTP
# session each, every file sent E2E_REPEAT times in a row (10: the cost of
# starting smtp-source, about 5 ms, is then paid once per 10 messages);
# the list is read round and round for the measured time.
#
# Per configuration: messages counted by smtp-sink over the measured time,
# the CPU time of every Postfix process (the master's session, exited
# daemons included through the master's cutime), of edmilter or the
# peers, of smtp-source, smtp-sink and Knot, from /proc/PID/stat. It
# prints a table, the ratios and "raw CONFIG KEY VALUE" lines.
#
# Knobs (environment): E2E_SECONDS (30), E2E_CONNS (64), E2E_REPEAT (10),
# E2E_WARMUP (messages at the sink before the measure starts, 500),
# E2E_LOW_CONNS (4), E2E_CONFIGS ("a b-inet b-unix c b-inet-low
# b-unix-low"), E2E_KEEP=DIR (keeps figures and
# logs), BUILDDIR (the tree). Needs root (Postfix's master), postfix,
# smtp-source, smtp-sink, knot, openssl, python3-dkim, python3-nacl.
# Exit status: 0, 1 when a run failed, 77 when it cannot run here.
set -u
SMOKE=0
case "${1:-}" in
--smoke) SMOKE=1 ;;
"") ;;
*)
	echo "usage: $0 [--smoke]" >&2
	exit 2
	;;
esac
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
: "${BUILDDIR:=$SRCDIR}"
BUILDDIR=$(cd "$BUILDDIR" && pwd)
export SRCDIR BUILDDIR
# Everything of the run (Postfix's queue too) on a tmpfs.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	TMPDIR=/dev/shm
	export TMPDIR
fi
. "$SRCDIR/tests/lib.sh"
. "$SRCDIR/tests/dns.sh"
. "$SRCDIR/tests/postfix.sh"

SECONDS_RUN=${E2E_SECONDS:-30}
CONNS=${E2E_CONNS:-64}
LOW_CONNS=${E2E_LOW_CONNS:-4}
REPEAT=${E2E_REPEAT:-10}
WARMUP=${E2E_WARMUP:-500}
CONFIGS=${E2E_CONFIGS:-a b-inet b-unix c b-inet-low b-unix-low}
CORPUS="$SHARED/corpora/spamassassin"
PY=/usr/bin/python3
SOURCE=/usr/sbin/smtp-source
SINK=/usr/sbin/smtp-sink
if [ "$SMOKE" -eq 1 ]; then
	CONNS=4
	REPEAT=1
	CONFIGS=${E2E_CONFIGS:-a b-inet b-unix}
fi

cannot() {
	echo "e2e: SKIP: $*"
	exit 77
}
[ "$(id -u)" -eq 0 ] || cannot "needs root (Postfix's master runs as root)"
command -v postfix >/dev/null || cannot "postfix missing (package postfix)"
[ -x "$SOURCE" ] || SOURCE=$(command -v smtp-source) ||
	cannot "smtp-source missing (package postfix)"
[ -x "$SINK" ] || SINK=$(command -v smtp-sink) ||
	cannot "smtp-sink missing (package postfix)"
for p in knotd knotc kdig; do
	command -v $p >/dev/null || cannot "$p missing (package knot)"
done
command -v openssl >/dev/null || cannot "openssl missing"
command -v setsid >/dev/null || cannot "setsid missing (util-linux)"
"$PY" -c 'import dkim, nacl, cryptography' 2>/dev/null ||
	cannot "python3-dkim, python3-nacl or python3-cryptography missing"
if [ "$SMOKE" -eq 0 ] && [ ! -d "$CORPUS" ]; then
	cannot "the SpamAssassin corpus is absent ($CORPUS)"
fi

echo "e2e: building edmilter in $BUILDDIR"
make -C "$BUILDDIR" -s edmilter >"$WORK/build.log" 2>&1 || {
	cat "$WORK/build.log"
	echo "e2e: the build failed"
	exit 1
}
# Postfix's daemons (user postfix) reach the unix sockets and per-run
# folders below $WORK.
chmod 711 "$WORK"
CLK_TCK=$(getconf CLK_TCK)

# Keys: RSA 2048 for example.com, ed25519 for example.org.
K="$WORK/keys"
mkdir -p "$K"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
	-out "$K/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$K/ed.pem" 2>/dev/null
P_RSA=$(openssl pkey -in "$K/rsa.pem" -pubout -outform DER | base64 -w0)
P_ED=$(openssl pkey -in "$K/ed.pem" -pubout -outform DER | tail -c 32 |
	base64 -w0)

# The zones: those of run.sh, but the client is 127.0.0.1 (smtp-source
# connects from loopback and Postfix hands that address to the milters):
# the envelope bench@example.com and the HELO mail.example.com both pass
# SPF for it.
dns_zone example.com <<EOZ
@ TXT "v=spf1 ip4:127.0.0.0/8 -all"
mail A 127.0.0.1
mail TXT "v=spf1 a -all"
_dmarc TXT "v=DMARC1; p=reject; sp=quarantine"
rsa._domainkey TXT $(dns_split_txt "v=DKIM1; k=rsa; p=$P_RSA")
EOZ
dns_zone example.org <<EOZ
@ TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc TXT "v=DMARC1; p=quarantine"
ed._domainkey TXT "v=DKIM1; k=ed25519; p=$P_ED"
EOZ
dns_zone example.net <<EOZ
@ TXT "v=spf1 ip4:198.51.100.0/24 -all"
_dmarc TXT "v=DMARC1; p=none"
EOZ
{
	echo "\$ORIGIN ."
	echo "\$TTL 60"
	echo "@ SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 60"
	echo "@ NS ns.example.com."
} >"$DNS_DIR/root.zone"

# e2e_dns_start: Knot with the zones above and the root zone, on
# 127.0.0.1:$DNS_PORT (for edmilter) and, when it can be had, on port 53
# of a loopback address of its own, $DNS_ADDR53 (opendmarc reads
# resolv.conf, which has no port).
e2e_dns_start() {
	DNS_PORT=$(free_port)
	DNS_ADDR53=$("$PY" - $$ <<'EOPY'
import socket, sys
pid = int(sys.argv[1])
for i in range(40):
    a = "127.53.%d.%d" % ((pid + i) % 250 + 1, pid // 250 % 250 + 1)
    try:
        for t in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(socket.AF_INET, t)
            s.bind((a, 53))
            s.close()
    except OSError:
        continue
    print(a)
    break
EOPY
)
	listen="127.0.0.1@$DNS_PORT"
	[ -n "$DNS_ADDR53" ] && listen="$listen, $DNS_ADDR53@53"
	mkdir -p "$DNS_DIR/db"
	{
		echo "server:"
		echo "    listen: [ $listen ]"
		echo "    rundir: $DNS_DIR"
		echo "database:"
		echo "    storage: $DNS_DIR/db"
		echo "log:"
		echo "  - target: stderr"
		echo "    any: warning"
		echo "zone:"
		for z in "$DNS_DIR"/*.zone; do
			n=$(basename "$z" .zone)
			[ "$n" = root ] && n=.
			echo "  - domain: $n"
			echo "    file: $z"
			echo "    zonefile-sync: -1"
			echo "    journal-content: none"
		done
	} >"$DNS_DIR/knot.conf"
	knotd -c "$DNS_DIR/knot.conf" >"$DNS_DIR/knot.log" 2>&1 &
	DNS_PID=$!
	CLEANUP="$CLEANUP dns_stop"
	i=0
	until kdig +time=1 +retry=0 -p "$DNS_PORT" @127.0.0.1 \
		_dmarc.nosuch.ie TXT 2>/dev/null | grep -q 'status: NXDOMAIN'; do
		i=$((i + 1))
		if [ $i -ge 100 ]; then
			sed 's/^/e2e:   /' "$DNS_DIR/knot.log"
			return 1
		fi
		sleep 0.1
	done
	return 0
}
e2e_dns_start || cannot "knotd did not start"

# The messages: the corpus (or, for --smoke, a handful), the mbox line
# removed, CRLF made LF (smtp-source ends each line with CRLF), a signed
# copy of every fourth, a few carrying clam.exe (not in --smoke, where
# every message must reach the sink).
M="$WORK/msgs"
mkdir -p "$M"
LIST="$WORK/list"
: >"$WORK/corpus"
if [ -d "$CORPUS" ]; then
	find "$CORPUS" -type f | sort >"$WORK/corpus"
fi
if [ "$SMOKE" -eq 1 ]; then
	head -8 "$WORK/corpus" >"$WORK/corpus.tmp"
	mv "$WORK/corpus.tmp" "$WORK/corpus"
	n=0
	while [ $n -lt 6 ]; do
		n=$((n + 1))
		{
			printf 'From: Someone <someone@nosuch-%d.ie>\n' $n
			printf 'To: rcpt@example.net\nSubject: smoke %d\n' $n
			printf 'Date: Thu, 03 Dec 2026 10:00:00 +0000\n'
			printf 'Message-ID: <smoke.%d@nosuch.ie>\n\n' $n
			printf 'Smoke test message %d.\n' $n
		} >"$WORK/own$n.eml"
		echo "$WORK/own$n.eml" >>"$WORK/corpus"
	done
fi
"$PY" - "$SRCDIR/tests" "$K" "$M" "$WORK/corpus" "$LIST" <<'EOPY' || exit 1
import os, sys
tests, keys, out, corpus, listfile = sys.argv[1:6]
sys.path.insert(0, tests)
import dkim
import dkim_sign  # the keys as dkimpy takes them, the signed headers

SIGNERS = [
    (dkim_sign.private_key(os.path.join(keys, "rsa.pem")), b"rsa",
     b"example.com", b"rsa-sha256", b"Alice <alice@example.com>"),
    (dkim_sign.private_key(os.path.join(keys, "ed.pem")), b"ed",
     b"example.org", b"ed25519-sha256", b"Bob <bob@example.org>"),
]

def plain(raw):
    """The message as SMTP carries it: no mbox line, LF line ends."""
    raw = raw.replace(b"\r\n", b"\n")
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    return raw

def resign(raw, signer):
    """The message with its From replaced, signed; None if dkimpy fails."""
    key, sel, dom, algo, frm = signer
    if b"\r" in raw:
        return None  # bare CRs: dkimpy and libopendkim disagree on them
    head, sep, body = raw.partition(b"\n\n")
    lines, skip = [b"From: " + frm], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skip:
                lines.append(line)
            continue
        skip = line.lower().startswith(b"from:")
        if not skip:
            lines.append(line)
    msg = b"\n".join(lines) + b"\n\n" + body
    try:
        sig = dkim.sign(msg, sel, dom, key, canonicalize=(b"relaxed", b"relaxed"),
                        signature_algorithm=algo,
                        include_headers=dkim_sign.HEADERS, linesep=b"\n")
    except Exception:
        return None
    return sig + msg

files = [l.strip() for l in open(corpus) if l.strip()]
signed = failed = 0
with open(listfile, "w") as lst:
    for i, f in enumerate(files):
        with open(f, "rb") as fh:
            m = plain(fh.read())
        if i % 4 == 1:
            s = resign(m, SIGNERS[(i // 4) % 2])
            if s is not None:
                m = s
                signed += 1
            else:
                failed += 1
        dst = os.path.join(out, "%05d.eml" % i)
        with open(dst, "wb") as fh:
            fh.write(m)
        lst.write(dst + "\n")
print("e2e: %d messages, %d of them DKIM-signed copies (%d unsignable)"
      % (len(files), signed, failed))
EOPY
n=0
if [ "$SMOKE" -eq 0 ]; then
	for f in clam.exe clam.zip clam.7z clam.tar.gz; do
		[ -f "$TESTFILES/$f" ] || continue
		n=$((n + 1))
		mail_with_attachment "$f" "$TESTFILES/$f" >"$M/virus-$f.eml"
		awk -v at=$((n * 10 - 7)) -v f="$M/virus-$f.eml" \
			'{ print } NR == at { print f } END { if (NR < at) print f }' \
			"$LIST" >"$LIST.tmp"
		mv "$LIST.tmp" "$LIST"
	done
	[ $n -gt 0 ] || echo "e2e: no clamav-testfiles: no infected messages"
fi
NMSGS=$(wc -l <"$LIST")
echo "e2e: $NMSGS messages in the list, $n with clam.exe"

# The sink: counts messages (-c writes "sess=N quit=N mesg=N" after each),
# keeps nothing; in --smoke it keeps every message in one file, one
# folder per configuration, to check what arrived.
SINK_PORT=$(free_port)
dump=""
if [ "$SMOKE" -eq 1 ]; then
	mkdir -p "$WORK/sink"
	chown nobody "$WORK/sink"
	dump="-D $WORK/sink/%s"
fi
# shellcheck disable=SC2086
"$SINK" -c -u nobody $dump "127.0.0.1:$SINK_PORT" 1024 >"$WORK/sink.out" 2>&1 &
SINK_PID=$!
sink_stop() {
	[ -n "${SINK_PID:-}" ] || return 0
	kill -TERM "$SINK_PID" 2>/dev/null
	wait "$SINK_PID" 2>/dev/null
	SINK_PID=""
}
CLEANUP="$CLEANUP sink_stop"
i=0
while ! "$PY" -c "import socket
socket.create_connection(('127.0.0.1', $SINK_PORT), 0.2)" 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 50 ] || cannot "smtp-sink did not start: $(cat "$WORK/sink.out")"
	sleep 0.1
done
sink_count() {
	tail -c 300 "$WORK/sink.out" | tr '\r' '\n' |
		sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | grep . || echo 0
}

# proc_snap FILE: "pid session ticks" of every process, ticks being
# utime + stime + cutime + cstime (a child that exited is in its parent's
# cutime once reaped, and every parent here outlives its children). One
# cat reads them all, so that few processes come or go meanwhile. The
# name in /proc/PID/stat may hold spaces: fields are counted after it.
proc_snap() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk '{
		pid = $1
		sub(/^.*\) /, "")
		print pid, $4, $12 + $13 + $14 + $15
	}' >"$1"
}
# ticks SNAP PID...: the ticks of those processes.
ticks() {
	f=$1
	shift
	awk -v l=" $* " 'index(l, " " $1 " ") { t += $3 } END { print t + 0 }' \
		"$f"
}
# sess_ticks SNAP SID: the ticks of every process of a session.
sess_ticks() {
	awk -v s="$2" '$2 == s { t += $3 } END { print t + 0 }' "$1"
}
queue_files() {
	find "$PF_QUEUE/incoming" "$PF_QUEUE/active" "$PF_QUEUE/deferred" \
		-type f 2>/dev/null | wc -l | tr -d ' '
}
val() {
	awk -v k="$2" '$1 == k { print $2 }' "$1"
}

# e2e_milter_start NAME SOCKET-SPEC: edmilter with the run.sh config
# (rules on) listening on SOCKET-SPEC.
e2e_milter_start() {
	conf="$WORK/$1/edmilter.conf"
	{
		echo "Socket $2"
		echo "SocketMode 0666"
		echo "ClamAVDatabase $SIGS"
		echo "TemporaryDirectory $WORK/$1/tmp"
		echo "AuthservID mx.bench.example"
		echo "AllowRoot yes"
		echo "Syslog no"
		echo "AuthChecks yes"
		echo "Nameservers 127.0.0.1@$DNS_PORT"
		echo "DNSTimeout 2000"
		# Postfix hands over 127.0.0.1: it must not be internal, or
		# SPF and DMARC would be skipped.
		echo "InternalHosts 10.0.0.0/8"
		echo "RulesPath $SRCDIR/rules/baseline.rules"
	} >"$conf"
	mkdir -p "$WORK/$1/tmp"
	"$EDMILTER" -n -c "$conf" >"$WORK/$1/check.log" 2>&1 || {
		sed 's/^/e2e:   /' "$WORK/$1/check.log"
		return 1
	}
	MILTER_LOG="$WORK/$1/milter.log"
	"$EDMILTER" -f -c "$conf" >>"$MILTER_LOG" 2>&1 &
	MILTER_PID=$!
	CLEANUP="$CLEANUP stop_milter"
	i=0
	while [ $i -lt 300 ]; do
		case $2 in
		unix:*)
			"$PY" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(0.2)
s.connect(sys.argv[1])' "${2#unix:}" 2>/dev/null && return 0
			;;
		inet:*)
			"$PY" -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' \
				"$(echo "$2" | sed 's/^inet:\([0-9]*\)@.*/\1/')" \
				2>/dev/null && return 0
			;;
		esac
		kill -0 "$MILTER_PID" 2>/dev/null || break
		sleep 0.1
		i=$((i + 1))
	done
	echo "e2e: $1: edmilter did not start:"
	sed 's/^/e2e:   /' "$MILTER_LOG" | tail -20
	return 1
}

# Postfix's spelling of a libmilter socket spec.
pf_milter_spec() {
	for s in "$@"; do
		case $s in
		inet:*@*) echo "inet:${s#*@}:$(echo "$s" | sed 's/^inet:\([^@]*\)@.*/\1/')" ;;
		local:*) echo "unix:${s#local:}" ;;
		*) echo "$s" ;;
		esac
	done | tr '\n' ' '
}

# e2e_postfix NAME MILTERS: a fresh instance relaying example.net to the
# sink, with those smtpd_milters (empty: none).
e2e_postfix() {
	mkdir -p "$WORK/$1"
	pf_start "$WORK/$1" 0 || return 1
	CLEANUP="$CLEANUP pf_stop"
	postconf -c "$PF_CONF" -e \
		"smtpd_milters = $2" \
		"virtual_mailbox_domains =" \
		"relay_domains = example.net" \
		"relay_transport = smtp" \
		"relayhost = [127.0.0.1]:$SINK_PORT" \
		"smtp_destination_concurrency_limit = $RUN_CONNS" \
		"default_process_limit = $((RUN_CONNS * 2 + 50))" \
		"smtp_helo_name = mx.test" >"$WORK/$1/postconf.log" 2>&1 &&
		postfix -c "$PF_CONF" reload >>"$WORK/$1/postconf.log" 2>&1 || {
		sed 's/^/e2e:   /' "$WORK/$1/postconf.log"
		return 1
	}
	return 0
}

# gen_start NAME FILE-OF-PATHS LOOP: smtp-source over the list, RUN_CONNS
# at a time, in a session of its own; LOOP=1 reads the list round and
# round until gen_stop.
gen_start() {
	setsid sh -c '
		list=$1 loop=$2 conns=$3 repeat=$4 port=$5 src=$6
		{
			cat "$list"
			while [ "$loop" = 1 ]; do cat "$list"; done
		} | xargs -P "$conns" -I{} "$src" -A -s 1 -m "$repeat" -F {} \
			-M mail.example.com -f bench@example.com \
			-t rcpt@example.net "127.0.0.1:$port"' \
		sh "$2" "$3" "$RUN_CONNS" "$REPEAT" "$PF_PORT" "$SOURCE" \
		>"$WORK/$1/gen.log" 2>&1 &
	GEN_PID=$!
	CLEANUP="$CLEANUP gen_stop"
}
# gen_stop: every process of the generator's session, by pid, until none
# is left (xargs may start one more smtp-source meanwhile).
gen_stop() {
	[ -n "${GEN_PID:-}" ] || return 0
	i=0
	while :; do
		pids=$(ps -e -o sid= -o pid= |
			awk -v s="$GEN_PID" '$1 == s { print $2 }')
		[ -n "$pids" ] || break
		sig=TERM
		[ $i -ge 50 ] && sig=KILL
		# shellcheck disable=SC2086
		kill -$sig $pids 2>/dev/null
		sleep 0.1
		i=$((i + 1))
	done
	wait "$GEN_PID" 2>/dev/null
	GEN_PID=""
}

# milter_ticks SNAP: CPU of the milters of the current configuration.
milter_ticks() {
	case $MILTERS_KIND in
	edmilter) ticks "$1" "$MILTER_PID" ;;
	peers)
		# shellcheck disable=SC2086
		ticks "$1" $PEERS_PIDS
		;;
	*) echo 0 ;;
	esac
}

# snap NAME WHEN: the counters at that moment, into $WORK/NAME.WHEN.
snap() {
	ps="$WORK/$1.$2.proc"
	t=$(date +%s.%N)
	n=$(sink_count)
	proc_snap "$ps"
	{
		echo "time $t"
		echo "sink $n"
		echo "queue $(queue_files)"
		echo "postfix $(sess_ticks "$ps" "$PF_MASTER")"
		echo "milter $(milter_ticks "$ps")"
		echo "gen $(sess_ticks "$ps" "$GEN_PID")"
		echo "sinkcpu $(ticks "$ps" "$SINK_PID")"
		echo "dns $(ticks "$ps" "$DNS_PID")"
		# The whole machine: busy (user, nice, system, irq, softirq)
		# and idle ticks, to tell what other work took.
		awk '$1 == "cpu" { print "busy", $2 + $3 + $4 + $7 + $8
			print "idle", $5 + $6 }' /proc/stat
		if [ "$MILTERS_KIND" = edmilter ]; then
			echo "verdicts $(grep -c ' verdict=' "$MILTER_LOG")"
		fi
	} >"$WORK/$1.$2"
}

# measure NAME: the measured run, once Postfix and its milters are up.
measure() {
	name=$1
	out="$WORK/$name.out"
	# The machine may be shared: how busy it was before this run.
	echo "loadavg_before $(cut -d' ' -f1 /proc/loadavg)" >>"$out"
	base=$(sink_count)
	gen_start "$name" "$LIST" 1
	# Warm-up: the DNS caches, the daemons Postfix starts on demand.
	i=0
	while [ "$(sink_count)" -lt $((base + WARMUP)) ]; do
		i=$((i + 1))
		if [ $i -ge 1200 ]; then
			echo "e2e: $name: the warm-up did not reach the sink"
			gen_stop
			return 1
		fi
		sleep 0.1
	done
	snap "$name" t0
	sleep "$SECONDS_RUN"
	snap "$name" t1
	gen_stop
	d() {
		echo $(($(val "$WORK/$name.t1" "$1") - $(val "$WORK/$name.t0" "$1")))
	}
	secs=$(awk -v a="$(val "$WORK/$name.t0" time)" \
		-v b="$(val "$WORK/$name.t1" time)" 'BEGIN { printf "%.2f", b - a }')
	n=$(d sink)
	per() {
		awk -v t="$1" -v h="$CLK_TCK" -v m="$n" \
			'BEGIN { printf "%.0f", m ? t / h * 1e6 / m : 0 }'
	}
	{
		echo "seconds $secs"
		echo "delivered $n"
		echo "msgs_per_sec $(awk -v n="$n" -v s="$secs" \
			'BEGIN { printf "%.1f", n / s }')"
		echo "queue_growth $(d queue)"
		echo "postfix_cpu_s $(awk -v t="$(d postfix)" -v h="$CLK_TCK" \
			'BEGIN { printf "%.2f", t / h }')"
		echo "postfix_cpu_us_per_msg $(per "$(d postfix)")"
		echo "milter_cpu_us_per_msg $(per "$(d milter)")"
		echo "gen_cpu_us_per_msg $(per "$(d gen)")"
		echo "sink_cpu_us_per_msg $(per "$(d sinkcpu)")"
		echo "dns_cpu_us_per_msg $(per "$(d dns)")"
		ours=$(($(d postfix) + $(d milter) + $(d gen) + $(d sinkcpu) +
			$(d dns)))
		echo "others_cpu_s $(awk -v t=$(($(d busy) - ours)) \
			-v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }')"
		echo "idle_cpu_s $(awk -v t="$(d idle)" -v h="$CLK_TCK" \
			'BEGIN { printf "%.2f", t / h }')"
		echo "server_cpu_us_per_msg $(per $(($(d postfix) + $(d milter) +
			$(d dns))))"
		# What the CPUs could carry if nothing else ran: the CPU
		# seconds of a second over the CPU of a message, everything of
		# the test counted (the generator and the sink too).
		echo "cpu_bound_msgs_per_sec $(awk -v c="$(nproc)" \
			-v t="$ours" -v h="$CLK_TCK" -v m="$n" \
			'BEGIN { printf "%.0f", t ? c * m * h / t : 0 }')"
		echo "accepted_per_sec $(awk -v n=$((n + $(d queue))) \
			-v s="$secs" 'BEGIN { printf "%.1f", n / s }')"
		if [ "$MILTERS_KIND" = edmilter ]; then
			echo "milter_verdicts $(d verdicts)"
		fi
	} >>"$out"
	# Let what is queued leave before the next configuration.
	pf_wait_queue_empty 120 || echo "e2e: $name: the queue did not drain"
	# Postfix's "delays=a/b/c/d": a is from MAIL FROM to the queue
	# manager, DATA and the milters' answer at its end included.
	grep ' status=sent ' "$PF_LOG" | tail -n +$((WARMUP + 1)) |
		sed -n 's/.* delays=\([0-9.]*\)\/.*/\1/p' | sort -n >"$WORK/$name.a"
	awk '{ v[NR] = $1 } END {
		if (NR == 0) exit
		printf "delay_a_p50_ms %.0f\n", v[int(NR * 0.5) + 1] * 1000
		printf "delay_a_p99_ms %.0f\n", v[int(NR * 0.99) + 1] * 1000
	}' "$WORK/$name.a" >>"$out"
	return 0
}

# smoke NAME: every message of the list once; all must reach the sink.
smoke() {
	name=$1
	out="$WORK/$name.out"
	base=$(sink_count)
	gen_start "$name" "$LIST" 0
	wait "$GEN_PID"
	GEN_PID=""
	i=0
	while [ "$(sink_count)" -lt $((base + NMSGS)) ] && [ $i -lt 600 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	pf_wait_queue_empty 10
	# What the sink kept of this configuration.
	mkdir -p "$WORK/$name/sink"
	mv "$WORK/sink"/* "$WORK/$name/sink/" 2>/dev/null
	kept() {
		cat "$WORK/$name/sink"/* 2>/dev/null | grep -c "$1"
	}
	{
		echo "sent $NMSGS"
		echo "delivered $(($(sink_count) - base))"
		echo "queued $(pf_queue_count)"
		echo "sink_kept $(kept '^X-Client-Addr: ')"
		echo "sink_authres $(kept '^Authentication-Results: mx.bench.example')"
		echo "sink_virus_scanned $(kept '^X-Virus-Scanned: edmilter')"
		echo "sink_dmarc $(kept 'dmarc=[a-z]* ')"
		if [ "$MILTERS_KIND" = edmilter ]; then
			echo "milter_verdicts $(grep -c ' verdict=' "$MILTER_LOG")"
			echo "milter_verdicts_with_qid $(grep -cE \
				'edmilter: [0-9A-F]{6,}: client=127\.0\.0\.1 .* verdict=' \
				"$MILTER_LOG")"
			echo "milter_accept $(grep -c ' verdict=accept ' "$MILTER_LOG")"
			echo "milter_spf_pass $(grep -c ' spf=pass ' "$MILTER_LOG")"
		fi
	} >>"$out"
	[ "$(val "$out" delivered)" = "$NMSGS" ] || return 1
	if [ "$MILTERS_KIND" = edmilter ]; then
		[ "$(val "$out" milter_verdicts_with_qid)" = "$NMSGS" ] ||
			return 1
	fi
	return 0
}

# e2e_peers_source DIR: sources tests/bench/peers.sh. Every client is
# 127.0.0.1 here, which opendmarc ignores unless told otherwise
# (IgnoreHosts defaults to 127.0.0.1): when peers.sh sets no IgnoreHosts,
# a copy of it with one is sourced, naming a file with 10.0.0.0/8 only.
e2e_peers_source() {
	src="$SRCDIR/tests/bench/peers.sh"
	if grep -q '^IgnoreHosts' "$src"; then
		# shellcheck disable=SC1090
		. "$src"
		return
	fi
	mkdir -p "$1/peers"
	echo "10.0.0.0/8" >"$1/peers/ignore-hosts"
	sed '/^RejectFailures true$/i\
IgnoreHosts $PEERS_DIR/ignore-hosts' "$src" >"$1/peers.sh"
	grep -q '^IgnoreHosts' "$1/peers.sh" ||
		echo "e2e: c: opendmarc will ignore 127.0.0.1 (no IgnoreHosts)"
	. "$1/peers.sh"
}

# run_config NAME: one configuration, from a fresh Postfix to its stop.
run_config() {
	name=$1
	MILTERS_KIND=none
	milters=""
	mkdir -p "$WORK/$name"
	RUN_CONNS=$CONNS
	case $name in
	*-low) RUN_CONNS=$LOW_CONNS ;;
	esac
	echo "conns $RUN_CONNS" >"$WORK/$name.out"
	case ${name%-low} in
	a) ;;
	b-inet)
		MILTERS_KIND=edmilter
		port=$(free_port)
		e2e_milter_start "$name" "inet:$port@127.0.0.1" || return 1
		milters="inet:127.0.0.1:$port"
		;;
	b-unix)
		MILTERS_KIND=edmilter
		e2e_milter_start "$name" "unix:$WORK/$name/edmilter.sock" ||
			return 1
		milters="unix:$WORK/$name/edmilter.sock"
		;;
	c)
		if [ ! -f "$SRCDIR/tests/bench/peers.sh" ]; then
			echo "e2e: c: SKIP: tests/bench/peers.sh is missing"
			return 77
		fi
		if [ -z "$DNS_ADDR53" ]; then
			echo "e2e: c: SKIP: no loopback address with port 53 free"
			return 77
		fi
		e2e_peers_source "$WORK/$name"
		CLEANUP="$CLEANUP peers_stop"
		chmod 711 "$WORK/$name"
		peers_start "$WORK/$name/peers" "$DNS_ADDR53" 53 "$SIGS" \
			>"$WORK/$name/peers.log" 2>&1
		rc=$?
		if [ $rc -ne 0 ]; then
			sed 's/^/e2e:   /' "$WORK/$name/peers.log"
			[ $rc -eq 77 ] && echo "e2e: c: SKIP: the peers cannot run"
			return $rc
		fi
		# Postfix's smtpd (user postfix) must reach every socket.
		chmod 666 "$WORK/$name/peers"/*.sock
		MILTERS_KIND=peers
		# shellcheck disable=SC2086
		milters=$(pf_milter_spec $PEERS_MILTERS)
		;;
	esac
	echo "e2e: $name: smtpd_milters = ${milters:-(none)}"
	e2e_postfix "$name" "$milters" || {
		echo "e2e: $name: Postfix did not start"
		return 1
	}
	if [ "$SMOKE" -eq 1 ]; then
		smoke "$name"
	else
		measure "$name"
	fi
	rc=$?
	pf_stop
	case $MILTERS_KIND in
	edmilter)
		if ! kill -0 "$MILTER_PID" 2>/dev/null; then
			echo "e2e: $name: edmilter died during the run"
			rc=1
		fi
		stop_milter
		;;
	peers) peers_stop ;;
	esac
	sed "s/^/raw $name /" "$WORK/$name.out"
	if [ $rc -ne 0 ]; then
		echo "e2e: $name: failed; the end of Postfix's log:"
		tail -15 "$WORK/$name/postfix/maillog" 2>/dev/null |
			sed 's/^/e2e:   /'
	fi
	return $rc
}

status=0
for c in $CONFIGS; do
	run_config "$c"
	rc=$?
	[ $rc -eq 0 ] || [ $rc -eq 77 ] || status=1
done

if [ -n "${E2E_KEEP:-}" ]; then
	mkdir -p "$E2E_KEEP"
	for c in $CONFIGS; do
		cp "$WORK/$c.out" "$E2E_KEEP/$c.out" 2>/dev/null
		cp "$WORK/$c/milter.log" "$E2E_KEEP/$c.milter.log" 2>/dev/null
		cp "$WORK/$c/postfix/maillog" "$E2E_KEEP/$c.maillog" 2>/dev/null
		if [ -d "$WORK/$c/sink" ]; then
			cat "$WORK/$c/sink"/* >"$E2E_KEEP/$c.sink" 2>/dev/null
		fi
		cp "$WORK/$c/peers/"*.log "$E2E_KEEP/" 2>/dev/null
	done
fi
echo
if [ "$SMOKE" -eq 1 ]; then
	printf '%-8s %6s %10s %9s\n' config sent delivered verdicts
	for c in $CONFIGS; do
		o="$WORK/$c.out"
		[ -s "$o" ] || continue
		printf '%-8s %6s %10s %9s\n' "$c" "$(val "$o" sent)" \
			"$(val "$o" delivered)" "$(val "$o" milter_verdicts)"
	done
	echo "(smoke: $CONNS sessions, each message once)"
	exit $status
fi

ms() {
	awk -v u="$1" 'BEGIN { if (u == "") print "-"; else printf "%.2f", u / 1000 }'
}
printf '%-10s %5s %9s %7s %7s %7s %8s %8s %7s %7s %7s %7s %7s %7s\n' \
	config conns delivered msg/s in/s cpu_msg/s pf_cpu_s pf_ms milt_ms \
	srv_ms gen_ms a_p50 a_p99 other_s
for c in $CONFIGS; do
	o="$WORK/$c.out"
	[ -s "$o" ] && [ -n "$(val "$o" delivered)" ] || continue
	printf '%-10s %5s %9s %7s %7s %7s %8s %8s %7s %7s %7s %7s %7s %7s\n' \
		"$c" "$(val "$o" conns)" \
		"$(val "$o" delivered)" "$(val "$o" msgs_per_sec)" \
		"$(val "$o" accepted_per_sec)" \
		"$(val "$o" cpu_bound_msgs_per_sec)" "$(val "$o" postfix_cpu_s)" \
		"$(ms "$(val "$o" postfix_cpu_us_per_msg)")" \
		"$(ms "$(val "$o" milter_cpu_us_per_msg)")" \
		"$(ms "$(val "$o" server_cpu_us_per_msg)")" \
		"$(ms "$(val "$o" gen_cpu_us_per_msg)")" \
		"$(val "$o" delay_a_p50_ms)" "$(val "$o" delay_a_p99_ms)" \
		"$(val "$o" others_cpu_s)"
done
echo "(msg/s: delivered to the sink; in/s: accepted by Postfix (the sink's" \
	"count plus the queue's growth); cpu_msg/s: CPUs over the CPU per" \
	"message of everything of the test; ms: CPU ms per delivered message" \
	"of Postfix, the milters, the two with Knot (srv), smtp-source;" \
	"a_p50/a_p99: Postfix's delay a in ms (MAIL FROM to queue manager," \
	"the milters included); other_s: CPU seconds the rest of the" \
	"machine took)"
# ratio X Y KEY: X's figure over Y's, when both ran.
ratio() {
	x=$(val "$WORK/$1.out" "$3" 2>/dev/null)
	y=$(val "$WORK/$2.out" "$3" 2>/dev/null)
	[ -n "$x" ] && [ -n "$y" ] || return 0
	r=$(awk -v x="$x" -v y="$y" 'BEGIN { printf "%.2f", (y > 0) ? x / y : 0 }')
	echo "raw ratio $1/$2.$3 $r"
	printf '%s / %s %s: %s\n' "$1" "$2" "$3" "$r"
}
echo
for b in b-inet b-unix; do
	ratio "$b" a msgs_per_sec
	ratio "$b" c msgs_per_sec
	ratio "$b" a cpu_bound_msgs_per_sec
	ratio "$b" c cpu_bound_msgs_per_sec
	ratio c "$b" server_cpu_us_per_msg
done
ratio b-unix b-inet msgs_per_sec
ratio b-unix-low b-inet-low msgs_per_sec
echo "(targets: b / a msg/s >= 0.75, b / c msg/s >= 1.6)"
echo "($CONNS SMTP sessions ($LOW_CONNS for -low), ${SECONDS_RUN} s measured per configuration" \
	"after $WARMUP messages of warm-up; each file sent $REPEAT times" \
	"in a row; $(nproc) CPUs," \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1);" \
	"load average before each:$(for c in $CONFIGS; do
		printf ' %s' "$(val "$WORK/$c.out" loadavg_before 2>/dev/null)"
	done))"
exit $status
