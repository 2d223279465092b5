#!/bin/sh
# floor.sh: the floor of edmilter's CPU per message. Builds the message
# list of tests/bench/run.sh (the SpamAssassin corpus, every fourth message
# replaced by a DKIM-signed copy, the ClamAV test program in four
# containers), writes the records of run.sh's DNS zones to a file, and
# runs tests/bench/floor, which times the raw library calls of each check
# (libclamav, libspf2, libopendkim, libopendmarc, GMime, PCRE2) per message
# on one thread, with every DNS answer already at hand. No DNS server and
# no edmilter are started. See docs/BENCHMARKS.md, "The floor".
#
# The list cannot be taken from run.sh: it lives in run.sh's work folder
# with the signed copies and keys, all removed when run.sh exits. The part
# of run.sh that builds it is repeated here.
#
# Knobs (environment): FLOOR_MSGS (measure only the first N messages),
# FLOOR_WARMUP (messages run unmeasured first, 100), BUILDDIR (the tree).
# Exit status: 0, 1 when a stage failed, 77 when it cannot run here.
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
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	TMPDIR=/dev/shm
	export TMPDIR
fi
. "$SRCDIR/tests/lib.sh"

CORPUS="$SHARED/corpora/spamassassin"
PY=/usr/bin/python3
FLOOR="$BUILDDIR/tests/bench/floor"

cannot() {
	echo "floor: SKIP: $*"
	exit 77
}
command -v openssl >/dev/null || cannot "openssl missing"
"$PY" -c 'import dkim, nacl, cryptography' 2>/dev/null ||
	cannot "python3-dkim, python3-nacl or python3-cryptography missing"
if [ "$SMOKE" -eq 0 ] && [ ! -d "$CORPUS" ]; then
	cannot "the SpamAssassin corpus is absent ($CORPUS)"
fi

echo "floor: building floor in $BUILDDIR"
make -C "$BUILDDIR" -s tests/bench/floor >"$WORK/build.log" 2>&1 || {
	cat "$WORK/build.log"
	echo "floor: the build failed"
	exit 1
}

# Keys and records as run.sh makes them.
K="$WORK/keys"
mkdir -p "$K"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
	-out "$K/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$K/ed.pem" 2>/dev/null
P_RSA=$(openssl pkey -in "$K/rsa.pem" -pubout -outform DER | base64 -w0)
P_ED=$(openssl pkey -in "$K/ed.pem" -pubout -outform DER | tail -c 32 |
	base64 -w0)
ZONE="$WORK/zone"
cat >"$ZONE" <<EOZ
example.com TXT v=spf1 ip4:192.0.2.0/24 -all
mail.example.com A 192.0.2.10
mail.example.com TXT v=spf1 a -all
_dmarc.example.com TXT v=DMARC1; p=reject; sp=quarantine
rsa._domainkey.example.com TXT v=DKIM1; k=rsa; p=$P_RSA
example.org TXT v=spf1 ip4:192.0.2.0/24 -all
_dmarc.example.org TXT v=DMARC1; p=quarantine
ed._domainkey.example.org TXT v=DKIM1; k=ed25519; p=$P_ED
example.net TXT v=spf1 ip4:198.51.100.0/24 -all
_dmarc.example.net TXT v=DMARC1; p=none
EOZ

# The messages, as run.sh builds them.
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
        return None
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
print("floor: %d messages, %d of them DKIM-signed copies (%d unsignable)"
      % (len(files), signed, failed))
EOPY
n=0
for f in clam.exe clam.zip clam.7z clam.tar.gz; do
	[ -f "$TESTFILES/$f" ] || continue
	n=$((n + 1))
	mail_with_attachment "$f" "$TESTFILES/$f" >"$M/virus-$f.eml"
	awk -v at=$((n * 10 - 7)) -v f="$M/virus-$f.eml" \
		'{ print } NR == at { print f } END { if (NR < at) print f }' \
		"$LIST" >"$LIST.tmp"
	mv "$LIST.tmp" "$LIST"
done
echo "floor: $(wc -l <"$LIST") messages in the list, $n with clam.exe"

mkdir -p "$WORK/tmp"
args="-z $ZONE -d $SIGS -r $SRCDIR/rules/baseline.rules -t $WORK/tmp"
args="$args -w ${FLOOR_WARMUP:-100}"
[ -n "${FLOOR_MSGS:-}" ] && args="$args -n $FLOOR_MSGS"
[ "$SMOKE" -eq 1 ] && args="$args --smoke"
echo "floor: load average before the run: $(cut -d' ' -f1 /proc/loadavg)"
# shellcheck disable=SC2086
"$FLOOR" $args --ip 192.0.2.10 --helo mail.example.com \
	--from bench@example.com --rcpt rcpt@example.net "$LIST"
rc=$?
echo "($(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' \
	/proc/cpuinfo | head -1); load average after: $(cut -d' ' -f1 \
	/proc/loadavg))"
[ $rc -eq 0 ] || exit 1
exit 0
