#!/bin/sh
# run.sh: the benchmark of edmilter, alone and beside the milter chain it
# replaces (no MTA).
#
#   sh tests/bench/run.sh            the full run (about 2.5 minutes)
#   sh tests/bench/run.sh --smoke    a few messages, a few seconds
#   sh tests/bench/run.sh --compare  every message once through edmilter
#                                    (rules off) and once through the
#                                    chain; lists the verdicts that differ
#
# Builds edmilter and tests/bench/miltergen (make bench), starts Knot DNS
# on loopback (tests/dns.sh) with SPF, DKIM and DMARC records for
# example.com/.org/.net and an empty root zone (every other name is
# NXDOMAIN, answered at once), starts edmilter with a config of its own
# (test signatures, temporary files on /dev/shm, sender authentication on,
# 127.0.0.1 not internal), and replays the SpamAssassin public corpus
# (../shared/corpora/spamassassin, read in place) through miltergen at 64
# concurrent connections: once with rules/baseline.rules, once without
# rules, then (as root, with the packages of "install-deps.sh --bench")
# once through the chain clamav-milter + clamd, opendkim, opendmarc
# (tests/bench/peers.sh) driven the way Postfix drives several milters.
# A quarter of the messages are DKIM-signed copies (From rewritten
# to example.com, rsa-sha256, or example.org, ed25519), and a few carry
# the harmless ClamAV test program clam.exe. It measures the daemon's CPU
# time per message (/proc/PID/stat utime+stime, before and after the
# measured run) and its peak resident memory (VmHWM), summed over the
# chain's four processes for the chain, and prints a table and the ratio
# edmilter/chain in msg/s. Everything it starts is stopped at exit.
#
# Knobs (environment): BENCH_SECONDS (30), BENCH_CONNS (64),
# BENCH_PER_CONN (messages per connection, 50), BENCH_QUICKACK=1 (miltergen
# -Q: acknowledge replies at once, see docs/BENCHMARKS.md), BENCH_KEEP=DIR
# (keep the figures and edmilter's logs there), BUILDDIR (the tree),
# BENCH_CHAIN=0 (no chain run; rules-on-70, the rules-on run paced at 70%
# of its rate for the latency below saturation, always runs), BENCH_DNS53
# (the loopback address where Knot also listens on port 53 for opendmarc,
# 127.0.83.1).
# Exit status: 0, 1 when a run failed, 77 when it cannot run here.
set -u
SMOKE=0
COMPARE=0
case "${1:-}" in
--smoke) SMOKE=1 ;;
--compare) COMPARE=1 ;;
"") ;;
*)
	echo "usage: $0 [--smoke | --compare]" >&2
	exit 2
	;;
esac
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
: "${BUILDDIR:=$SRCDIR}"
BUILDDIR=$(cd "$BUILDDIR" && pwd)
export SRCDIR BUILDDIR
# The work folder (messages, logs, DNS, edmilter's temporary files) on a
# tmpfs, so that the disk plays no part.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	TMPDIR=/dev/shm
	export TMPDIR
fi
. "$SRCDIR/tests/lib.sh"
. "$SRCDIR/tests/dns.sh"
. "$SRCDIR/tests/bench/peers.sh"

SECONDS_RUN=${BENCH_SECONDS:-30}
CONNS=${BENCH_CONNS:-64}
PER_CONN=${BENCH_PER_CONN:-50}
CORPUS="$SHARED/corpora/spamassassin"
PY=/usr/bin/python3
GEN="$BUILDDIR/tests/bench/miltergen"

cannot() {
	echo "bench: SKIP: $*"
	exit 77
}
command -v knotd >/dev/null || cannot "knotd missing (package knot)"
command -v knotc >/dev/null || cannot "knotc missing (package knot)"
command -v openssl >/dev/null || cannot "openssl missing"
"$PY" -c 'import dkim, nacl, cryptography' 2>/dev/null ||
	cannot "python3-dkim, python3-nacl or python3-cryptography missing"
if [ "$SMOKE" -eq 0 ] && [ ! -d "$CORPUS" ]; then
	cannot "the SpamAssassin corpus is absent ($CORPUS)"
fi
# The chain: not in the smoke mode (CI has no peer packages), and only
# where it can run (root: a mount namespace and port 53 for opendmarc).
CHAIN=0
CHAIN_WHY=""
DNS53=${BENCH_DNS53:-127.0.83.1}
if [ "$SMOKE" -eq 1 ]; then
	CHAIN_WHY="not in the smoke mode"
elif [ "${BENCH_CHAIN:-1}" = 0 ]; then
	CHAIN_WHY="BENCH_CHAIN=0"
elif [ -n "$(peers_missing)" ]; then
	CHAIN_WHY="missing:$(peers_missing) (sh contrib/install-deps.sh --bench)"
elif [ "$(id -u)" -ne 0 ]; then
	CHAIN_WHY="needs root (opendmarc's resolv.conf, port 53)"
else
	CHAIN=1
fi
if [ "$COMPARE" -eq 1 ] && [ "$CHAIN" -eq 0 ]; then
	cannot "the chain cannot run: $CHAIN_WHY"
fi

echo "bench: building edmilter and miltergen in $BUILDDIR"
make -C "$BUILDDIR" -s edmilter bench >"$WORK/build.log" 2>&1 || {
	cat "$WORK/build.log"
	echo "bench: the build failed"
	exit 1
}

# Keys: RSA 2048 for example.com, ed25519 for example.org.
K="$WORK/keys"
mkdir -p "$K"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
	-out "$K/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$K/ed.pem" 2>/dev/null
P_RSA=$(openssl pkey -in "$K/rsa.pem" -pubout -outform DER | base64 -w0)
P_ED=$(openssl pkey -in "$K/ed.pem" -pubout -outform DER | tail -c 32 |
	base64 -w0)

# The zones. The envelope is bench@example.com from 192.0.2.10
# (mail.example.com): SPF passes; DMARC passes for the signed copies and is
# "none" for the corpus' own From domains (NXDOMAIN from the root zone).
dns_zone example.com <<EOZ
@ TXT "v=spf1 ip4:192.0.2.0/24 -all"
mail A 192.0.2.10
mail TXT "v=spf1 a -all"
_dmarc TXT "v=DMARC1; p=reject; sp=quarantine"
rsa._domainkey TXT $(dns_split_txt "v=DKIM1; k=rsa; p=$P_RSA")
EOZ
dns_zone example.org <<EOZ
@ TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc TXT "v=DMARC1; p=quarantine"
ed._domainkey TXT "v=DKIM1; k=ed25519; p=$P_ED"
EOZ
dns_zone example.net <<EOZ
@ TXT "v=spf1 ip4:198.51.100.0/24 -all"
_dmarc TXT "v=DMARC1; p=none"
EOZ
dns_start || cannot "knotd did not start"
# The root zone, added after the start (dns.sh names zones after their
# files): every name outside the zones above is NXDOMAIN, as it would be
# for most senders' missing records, rather than REFUSED.
{
	echo "\$ORIGIN ."
	echo "\$TTL 60"
	echo "@ SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 60"
	echo "@ NS ns.example.com."
} >"$DNS_DIR/root.zone"
cat >>"$DNS_DIR/knot.conf" <<EOC
  - domain: .
    file: $DNS_DIR/root.zone
    zonefile-sync: -1
    journal-content: none
EOC
if [ "$CHAIN" -eq 1 ]; then
	# opendmarc and its libspf2 read resolv.conf, which has no port:
	# the same server listens on port 53 of a loopback address too.
	# A listening address changes only with a restart.
	dns_stop
	sed -i "s/^    listen: .*/    listen: [ 127.0.0.1@$DNS_PORT, $DNS53@53 ]/" \
		"$DNS_DIR/knot.conf"
	knotd -c "$DNS_DIR/knot.conf" >>"$DNS_DIR/knot.log" 2>&1 &
	# shellcheck disable=SC2034 # dns_stop stops it
	DNS_PID=$!
	i=0
	until kdig +time=1 +retry=0 @"$DNS53" _dmarc.example.com TXT \
		2>/dev/null | grep -q 'status: NOERROR'; do
		i=$((i + 1))
		if [ $i -ge 50 ]; then
			CHAIN=0
			CHAIN_WHY="Knot does not answer on $DNS53@53"
			[ "$COMPARE" -eq 0 ] || cannot "$CHAIN_WHY"
			# Back to the loopback port alone.
			dns_stop
			sed -i "s/^    listen: .*/    listen: 127.0.0.1@$DNS_PORT/" \
				"$DNS_DIR/knot.conf"
			knotd -c "$DNS_DIR/knot.conf" >>"$DNS_DIR/knot.log" 2>&1 &
			# shellcheck disable=SC2034 # dns_stop stops it
			DNS_PID=$!
			break
		fi
		sleep 0.1
	done
else
	knotc -c "$DNS_DIR/knot.conf" reload >"$WORK/knotc.log" 2>&1 ||
		cannot "knotc reload failed: $(cat "$WORK/knotc.log")"
fi
i=0
until kdig +time=1 +retry=0 -p "$DNS_PORT" @127.0.0.1 _dmarc.nosuch.ie TXT \
	2>/dev/null | grep -q 'status: NXDOMAIN'; do
	i=$((i + 1))
	[ $i -lt 50 ] || cannot "knotd does not serve the root zone"
	sleep 0.1
done

# The messages: the corpus (or, for --smoke, a handful of it), a signed
# copy of every fourth, a few carrying clam.exe.
M="$WORK/msgs"
mkdir -p "$M/signed"
LIST="$WORK/list"
: >"$WORK/corpus"
if [ -d "$CORPUS" ]; then
	find "$CORPUS" -type f | sort >"$WORK/corpus"
fi
if [ "$SMOKE" -eq 1 ]; then
	head -8 "$WORK/corpus" >"$WORK/corpus.tmp"
	mv "$WORK/corpus.tmp" "$WORK/corpus"
	# Without the corpus, a few messages of our own.
	n=0
	while [ $n -lt 6 ]; do
		n=$((n + 1))
		{
			printf 'From: Someone <someone@nosuch-%d.ie>\n' $n
			printf 'To: rcpt@example.net\nSubject: smoke %d\n' $n
			printf 'Date: Thu, 03 Dec 2026 10:00:00 +0000\n'
			printf 'Message-ID: <smoke.%d@nosuch.ie>\n\n' $n
			printf 'Smoke test message %d.\n' $n
		} >"$M/own$n.eml"
		echo "$M/own$n.eml" >>"$WORK/corpus"
	done
fi
"$PY" - "$SRCDIR/tests" "$K" "$M/signed" "$WORK/corpus" "$LIST" <<'EOPY' || exit 1
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

def resign(raw, signer):
    """The message with its From replaced, signed; None if dkimpy fails."""
    key, sel, dom, algo, frm = signer
    raw = raw.replace(b"\r\n", b"\n")
    if b"\r" in raw:
        return None  # bare CRs: dkimpy and libopendkim disagree on them
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1]
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
        if i % 4 == 1:
            with open(f, "rb") as fh:
                m = resign(fh.read(), SIGNERS[(i // 4) % 2])
            if m is not None:
                dst = os.path.join(out, "%05d.eml" % i)
                with open(dst, "wb") as fh:
                    fh.write(m)
                lst.write(dst + "\n")
                signed += 1
                continue
            failed += 1
        lst.write(f + "\n")
print("bench: %d messages, %d of them DKIM-signed copies (%d unsignable)"
      % (len(files), signed, failed))
EOPY
n=0
for f in clam.exe clam.zip clam.7z clam.tar.gz; do
	[ -f "$TESTFILES/$f" ] || continue
	n=$((n + 1))
	mail_with_attachment "$f" "$TESTFILES/$f" >"$M/virus-$f.eml"
	# Spread through the list: after line 3, 13, 23, ...
	awk -v at=$((n * 10 - 7)) -v f="$M/virus-$f.eml" \
		'{ print } NR == at { print f } END { if (NR < at) print f }' \
		"$LIST" >"$LIST.tmp"
	mv "$LIST.tmp" "$LIST"
done
[ $n -gt 0 ] || echo "bench: no clamav-testfiles: no infected messages"
if [ "$COMPARE" -eq 1 ]; then
	# Two DMARC failures under p=quarantine, so that the comparison also
	# shows each side enforcing a policy (the corpus has none): From
	# example.org unsigned (MAIL FROM example.com does not align), and a
	# signed example.org copy with its body changed after signing.
	{
		printf 'From: Bob <bob@example.org>\nTo: rcpt@example.net\n'
		printf 'Subject: unsigned\nMessage-ID: <dmarc.1@example.org>\n'
		printf 'Date: Thu, 03 Dec 2026 10:00:00 +0000\n\nNo signature.\n'
	} >"$M/dmarc-unsigned.eml"
	echo "$M/dmarc-unsigned.eml" >>"$LIST"
	f=$(grep -l 'd=example\.org;' "$M"/signed/*.eml \
		2>/dev/null | head -1)
	if [ -n "$f" ]; then
		{
			cat "$f"
			echo "A line added after signing."
		} >"$M/dmarc-badsig.eml"
		echo "$M/dmarc-badsig.eml" >>"$LIST"
	fi
fi
echo "bench: $(wc -l <"$LIST") messages in the list, $n with clam.exe"

mkdir -p "$WORK/tmp"
CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID...: utime + stime (fields 14 and 15; the name may hold
# spaces), summed over the processes given.
cpu_ticks() {
	for p in "$@"; do
		sed 's/^.*) //' "/proc/$p/stat"
	done | awk '{ t += $12 + $13 } END { print t + 0 }'
}
# vmhwm_kb PID...: the peak resident memory, summed over the processes.
vmhwm_kb() {
	for p in "$@"; do
		cat "/proc/$p/status"
	done | awk '/^VmHWM:/ { k += $2 } END { print k + 0 }'
}
# val FILE KEY: a value of miltergen's output.
val() {
	awk -v k="$2" '$1 == k { print $2 }' "$1"
}

# drive NAME "SOCKETS" PID...: miltergen against the milter(s) at SOCKETS
# (one -s SPEC each, in order), the CPU time and peak memory of the
# processes PID...; the figures in $WORK/NAME.out. With --compare, one
# pass over the list, each message's verdict in $WORK/NAME.verdicts.
drive() {
	name=$1
	socks=$2
	shift 2
	gen="$GEN $socks --ip 192.0.2.10 --helo mail.example.com
		--from bench@example.com --rcpt rcpt@example.net"
	[ -n "${BENCH_QUICKACK:-}" ] && gen="$gen -Q"
	if [ "$SMOKE" -eq 1 ]; then
		runargs="-c 4 -m 3 -n $(wc -l <"$LIST")"
	elif [ "$COMPARE" -eq 1 ]; then
		runargs="-c $CONNS -m $PER_CONN -n $(wc -l <"$LIST")"
		runargs="$runargs --verdicts $WORK/$name.verdicts"
	else
		# A warm-up pass (the DNS cache, the allocator) not measured.
		# shellcheck disable=SC2086
		$gen -q -c "$CONNS" -m "$PER_CONN" -n 500 "$LIST" \
			>"$WORK/$name.warmup" 2>&1
		runargs="-c $CONNS -m $PER_CONN -t $SECONDS_RUN"
		[ -n "${RATE:-}" ] && runargs="$runargs --rate $RATE"
	fi
	# The machine may be shared: say how busy it was before the run.
	load=$(cut -d' ' -f1 /proc/loadavg)
	t0=$(cpu_ticks "$@")
	for p in "$@"; do
		echo "$p $(cpu_ticks "$p") $(cat "/proc/$p/comm")"
	done >"$WORK/$name.cpu0"
	# shellcheck disable=SC2086
	$gen $runargs "$LIST" >"$WORK/$name.out" 2>"$WORK/$name.err"
	rc=$?
	for p in "$@"; do
		kill -0 "$p" 2>/dev/null && continue
		echo "bench: $name: process $p died during the run"
		return 2
	done
	t1=$(cpu_ticks "$@")
	for p in "$@"; do
		echo "$p $(cpu_ticks "$p") $(cat "/proc/$p/comm")"
	done >"$WORK/$name.cpu1"
	hwm=$(vmhwm_kb "$@")
	msgs=$(val "$WORK/$name.out" final_replies)
	gcpu=$(val "$WORK/$name.out" gen_cpu_s)
	{
		echo "cpu_ticks $((t1 - t0))"
		echo "cpu_us_per_msg $(awk -v t=$((t1 - t0)) -v h="$CLK_TCK" \
			-v m="${msgs:-0}" 'BEGIN { printf "%.0f", m ? t / h * 1e6 / m : 0 }')"
		echo "gen_cpu_us_per_msg $(awk -v g="${gcpu:-0}" -v m="${msgs:-0}" \
			'BEGIN { printf "%.0f", m ? g * 1e6 / m : 0 }')"
		echo "vmhwm_kb $hwm"
		# With several processes, each one's share too.
		[ $# -gt 1 ] && awk -v h="$CLK_TCK" -v m="${msgs:-0}" '
			NR == FNR { t0[$1] = $2; next }
			{ printf "cpu_us_per_msg_%s %.0f\n", $3,
			    m ? ($2 - t0[$1]) / h * 1e6 / m : 0 }' \
			"$WORK/$name.cpu0" "$WORK/$name.cpu1"
		echo "loadavg_before $load"
		echo "exit $rc"
	} >>"$WORK/$name.out"
	sed "s/^/raw $name /" "$WORK/$name.out"
	if [ "$rc" -ne 0 ]; then
		echo "bench: $name: miltergen exited $rc"
		sed 's/^/bench:   /' "$WORK/$name.err" | head -20
		return 1
	fi
	return 0
}

# bench_run NAME [extra config lines]: edmilter with a fresh config.
bench_run() {
	name=$1
	shift
	conf="$WORK/$name.conf"
	MILTER_PORT=$(free_port)
	{
		echo "Socket inet:$MILTER_PORT@127.0.0.1"
		echo "ClamAVDatabase $SIGS"
		echo "TemporaryDirectory $WORK/tmp"
		echo "AuthservID mx.bench.example"
		echo "AllowRoot yes"
		echo "Syslog no"
		echo "AuthChecks yes"
		echo "Nameservers 127.0.0.1@$DNS_PORT"
		echo "DNSTimeout 2000"
		echo "InternalHosts 10.0.0.0/8"
		for l in "$@"; do echo "$l"; done
	} >"$conf"
	"$EDMILTER" -n -c "$conf" >"$WORK/$name.check" 2>&1 || {
		cat "$WORK/$name.check"
		return 1
	}
	: >"$WORK/milter.log"
	start_milter "$conf" || return 1
	drive "$name" "-s inet:$MILTER_PORT@127.0.0.1" "$MILTER_PID"
	rc=$?
	if [ "$rc" -eq 2 ]; then
		echo "bench: $name: edmilter died during the run:"
		tail -20 "$WORK/milter.log" | sed 's/^/bench:   /'
		MILTER_PID=""
	fi
	stop_milter
	cp "$WORK/milter.log" "$WORK/$name.milter.log"
	[ "$rc" -eq 0 ]
}

# chain_run NAME: clamav-milter (and clamd), opendkim, opendmarc, in this
# order, as Postfix calls them; CPU and memory of all four processes.
chain_run() {
	name=$1
	rm -rf "$WORK/peers"
	peers_start "$WORK/peers" "$DNS53" 53 "$SIGS"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "bench: $name: the chain did not start"
		return 1
	fi
	CLEANUP="$CLEANUP peers_stop"
	socks=""
	for s in $PEERS_MILTERS; do socks="$socks -s $s"; done
	# shellcheck disable=SC2086
	drive "$name" "$socks" $PEERS_PIDS
	rc=$?
	[ "$rc" -eq 2 ] && tail -n 5 "$WORK"/peers/*.log | sed 's/^/bench:   /'
	peers_stop
	for l in "$WORK"/peers/*.log; do
		cp "$l" "$WORK/$name.$(basename "$l" .log).milter.log"
	done
	[ "$rc" -eq 0 ]
}

# compare A B: the messages whose verdicts differ between two runs, and a
# count of each pair of verdicts.
compare() {
	sh "$SRCDIR/tests/bench/verdicts.sh" "$WORK/$1.verdicts" \
		"$WORK/$2.verdicts" "$1" "$2"
}

keep() {
	[ -n "${BENCH_KEEP:-}" ] || return 0
	mkdir -p "$BENCH_KEEP"
	cp "$WORK"/*.out "$WORK"/*.milter.log "$BENCH_KEEP"/ 2>/dev/null
	cp "$WORK"/*.verdicts "$BENCH_KEEP"/ 2>/dev/null
	cp "$WORK"/*.conf "$BENCH_KEEP"/ 2>/dev/null
	[ -d "$WORK/peers" ] && cp "$WORK"/peers/*.conf "$BENCH_KEEP"/
	return 0
}

status=0
if [ "$COMPARE" -eq 1 ]; then
	bench_run rules-off || status=1
	chain_run chain || status=1
	[ "$status" -eq 0 ] && { compare rules-off chain || status=1; }
	keep
	exit $status
fi
bench_run rules-on "RulesPath $SRCDIR/rules/baseline.rules" || status=1
# The latency below saturation: the same again, paced in an open loop at
# 70% of the rate just measured, as mail arrives at an MX.
if [ "$SMOKE" -eq 0 ] && [ "$status" -eq 0 ]; then
	RATE=$(awk -v r="$(val "$WORK/rules-on.out" msgs_per_sec)" \
		'BEGIN { printf "%.0f", r * 0.7 }')
	bench_run rules-on-70 "RulesPath $SRCDIR/rules/baseline.rules" ||
		status=1
	RATE=""
fi
bench_run rules-off || status=1
if [ "$CHAIN" -eq 1 ]; then
	chain_run chain || status=1
else
	echo "bench: chain: SKIP: $CHAIN_WHY"
fi

# row NAME: one line of the table.
row() {
	o="$WORK/$1.out"
	[ -s "$o" ] || return 0
	printf '%-9s %8s %8s %8s %8s %9s %10s %7s %9s  %s/%s/%s/%s/%s %s\n' \
		"$1" "$(val "$o" final_replies)" "$(val "$o" msgs_per_sec)" \
		"$(val "$o" eom_p50_us)" "$(val "$o" eom_p99_us)" \
		"$(val "$o" eom_p999_us)" "$(val "$o" cpu_us_per_msg)" \
		"$(val "$o" gen_cpu_us_per_msg)" \
		"$(($(val "$o" vmhwm_kb) / 1024))" \
		"$(val "$o" verdict_accept)" "$(val "$o" verdict_quarantine)" \
		"$(val "$o" verdict_reject)" "$(val "$o" verdict_tempfail)" \
		"$(val "$o" verdict_discard)" "$(val "$o" errors)"
}
# ratio NAME: edmilter's msg/s in run NAME over the chain's.
ratio() {
	awk -v a="$(val "$WORK/$1.out" msgs_per_sec)" \
		-v b="$(val "$WORK/chain.out" msgs_per_sec)" \
		'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "-" }'
}
echo
printf '%-9s %8s %8s %8s %8s %9s %10s %7s %9s  %s\n' run messages msg/s \
	p50_us p99_us p99.9_us cpu_us/msg gen_cpu VmHWM_MiB \
	"accept/quarantine/reject/tempfail/discard errors"
row rules-on
row rules-on-70
row rules-off
row chain
if [ "$SMOKE" -eq 1 ]; then
	echo "(smoke: 4 connections, $(wc -l <"$LIST") messages per run)"
else
	[ -s "$WORK/rules-on-70.out" ] &&
		echo "rules-on-70: paced at 70% of rules-on's msg/s" \
			"($(val "$WORK/rules-on-70.out" msgs_per_sec) msg/s):" \
			"p99 $(val "$WORK/rules-on-70.out" eom_p99_us) us," \
			"p99.9 $(val "$WORK/rules-on-70.out" eom_p999_us) us"
	loads="$(val "$WORK/rules-on.out" loadavg_before), $(val \
		"$WORK/rules-off.out" loadavg_before)"
	[ -s "$WORK/chain.out" ] &&
		loads="$loads, $(val "$WORK/chain.out" loadavg_before)"
	echo "($CONNS connections, ${SECONDS_RUN} s per run, $PER_CONN" \
		"messages per connection; $(nproc) CPUs," \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1);" \
		"load average before each run: $loads)"
	if [ -s "$WORK/chain.out" ]; then
		echo "edmilter/chain msg/s: rules-on $(ratio rules-on)," \
			"rules-off $(ratio rules-off) (chain CPU and VmHWM:" \
			"clamd + clamav-milter + opendkim + opendmarc)"
		awk '$1 ~ /^cpu_us_per_msg_/ {
			sub(/^cpu_us_per_msg_/, "", $1)
			l = l sep $1 " " $2
			sep = ", "
		}
		END { print "chain CPU us/msg by process: " l }' "$WORK/chain.out"
	fi
fi
keep
exit $status
