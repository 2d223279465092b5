#!/bin/sh
# demo.sh: edmilter end to end, from a fresh Debian 12 clone, as root:
#
#   sudo sh contrib/demo.sh        (DEMO_KEEP=1 keeps the work folder)
#
# Installs what is missing (contrib/install-deps.sh), builds if needed,
# starts edmilter and a private Postfix on loopback (tests/postfix.sh; the
# system's Postfix, if any, is left alone), sends a few real messages
# through SMTP and shows what happened to each. It uses the test
# signatures of tests/data/sigs, which find the harmless clam.exe test
# program of clamav-testfiles and the EICAR test string: no download.
# Stops everything it started. Exits 0 only when every message got the
# verdict it should.
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
cd "$SRCDIR" || exit 1

say() {
	printf '\n==> %s\n' "$*"
}

die() {
	echo "demo: $*" >&2
	exit 1
}

# Postfix's master runs as root, and install-deps may need apt-get.
[ "$(id -u)" -eq 0 ] ||
	die "run it as root (sudo sh contrib/demo.sh): Postfix needs root"

say "Packages (contrib/install-deps.sh)"
sh contrib/install-deps.sh || die "installing the packages failed"

say "Build (in build/)"
if [ ! -x configure ] || [ configure.ac -nt configure ]; then
	autoreconf -fi || die "autoreconf failed"
fi
# The same build folder as contrib/test.sh; a tree configured in place
# (./configure run at the top) is used as it is.
if [ -f config.status ]; then
	BUILDDIR=$SRCDIR
else
	BUILDDIR=$SRCDIR/build
	mkdir -p "$BUILDDIR"
	if [ ! -f "$BUILDDIR/Makefile" ]; then
		(cd "$BUILDDIR" && "$SRCDIR/configure" -q) ||
			die "configure failed"
	fi
fi
# make rebuilds only what changed.
make -s -C "$BUILDDIR" || die "the build failed"

# shellcheck source=tests/postfix.sh
. "$SRCDIR/tests/postfix.sh"

DEMO=$(mktemp -d "${TMPDIR:-/tmp}/edmdemo.XXXXXX") || die "mktemp failed"
MILTER_PID=""
TESTFILES=/usr/share/clamav-testfiles
# The public corpora: ../shared beside the clone, or SHARED=DIR.
HAM="${SHARED:-$SRCDIR/../shared}/corpora/spamassassin/easy-ham-1"

stop_milter() {
	[ -n "$MILTER_PID" ] || return 0
	kill -TERM "$MILTER_PID" 2>/dev/null
	# libmilter notices a stop within 5 seconds.
	i=0
	while kill -0 "$MILTER_PID" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$MILTER_PID" 2>/dev/null
	wait "$MILTER_PID" 2>/dev/null
	MILTER_PID=""
}

cleanup() {
	stop_milter
	pf_stop
	if [ "${DEMO_KEEP:-0}" = 1 ]; then
		echo "demo: kept $DEMO"
	else
		rm -rf "$DEMO"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

say "Configuration ($DEMO/edmilter.conf)"
MILTER_PORT=$(pf_free_port)
mkdir -p "$DEMO/tmp" "$DEMO/msgs"
cat >"$DEMO/edmilter.conf" <<EOF
# Written by contrib/demo.sh. A real install runs as UserID, with syslog.
Socket inet:$MILTER_PORT@127.0.0.1
AllowRoot yes
Syslog no
ClamAVDatabase $SRCDIR/tests/data/sigs
TemporaryDirectory $DEMO/tmp
OnInfected reject
RejectMessage message refused: virus found: %v
AddHeaders yes
AuthservID mx.test
RulesPath $DEMO/rules
EOF
# The shipped rules, and a few of the demo's own.
mkdir -p "$DEMO/rules"
cp "$SRCDIR/rules/baseline.rules" "$DEMO/rules/10-baseline.rules"
cat >"$DEMO/rules/20-demo.rules" <<'EOR'
rule demo-blocked-sender {
    envelope.from =~ /@spammer\.example$/
    => reject 550 5.7.1 "sender refused by local policy"
}
rule demo-cheap-pills { subject =~ /cheap pills/i => score 6 }
rule demo-macro-document {
    attachment.name =~ /\.docm$/i
    => quarantine "macro document held for review"
}
EOR
cat "$DEMO/edmilter.conf"
echo "--- $DEMO/rules/20-demo.rules (and the shipped rules/baseline.rules)"
cat "$DEMO/rules/20-demo.rules"

say "Starting edmilter on 127.0.0.1:$MILTER_PORT"
MILTER_LOG="$DEMO/edmilter.log"
"$BUILDDIR/edmilter" -f -c "$DEMO/edmilter.conf" 2>>"$MILTER_LOG" &
MILTER_PID=$!
i=0
while ! python3 -c "import socket
socket.create_connection(('127.0.0.1', $MILTER_PORT), 0.2)" 2>/dev/null; do
	if ! kill -0 "$MILTER_PID" 2>/dev/null || [ $i -ge 100 ]; then
		cat "$MILTER_LOG" >&2
		die "edmilter did not start"
	fi
	sleep 0.1
	i=$((i + 1))
done
cat "$MILTER_LOG"

say "Starting a private Postfix"
pf_start "$DEMO" "$MILTER_PORT" || die "Postfix did not start"
echo "smtpd on 127.0.0.1:$PF_PORT, config in $PF_CONF,"
echo "smtpd_milters = inet:127.0.0.1:$MILTER_PORT," \
	"milter_default_action = tempfail"

# The messages. mime_mail SUBJECT TEXT [NAME TYPE FILE]...: a message with
# each FILE attached in base64.
N=0
mime_mail() {
	subj=$1 text=$2
	shift 2
	N=$((N + 1))
	cat <<EOF
From: Alice Example <alice@example.com>
To: Bob Example <bob@$PF_DOMAIN>
Subject: $subj
Date: $(LC_ALL=C date -R)
Message-ID: <demo.$N.$$@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="demo-boundary"

--demo-boundary
Content-Type: text/plain; charset=utf-8

$text

EOF
	while [ $# -ge 3 ]; do
		cat <<EOF
--demo-boundary
Content-Type: $2; name="$1"
Content-Disposition: attachment; filename="$1"
Content-Transfer-Encoding: base64

$(base64 <"$3")

EOF
		shift 3
	done
	echo "--demo-boundary--"
}

# A small PDF and PNG made here, so that clean attachments are real files.
python3 - "$DEMO/report.pdf" "$DEMO/dot.png" <<'EOF'
import struct, sys, zlib

pdf, png = sys.argv[1:3]
text = b"BT /F1 18 Tf 72 720 Td (Hello from the edmilter demo) Tj ET"
objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
	b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
	b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
	b"/Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
	b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
	b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
out, offs = b"%PDF-1.4\n", []
for i, o in enumerate(objs, 1):
	offs.append(len(out))
	out += b"%d 0 obj\n%s\nendobj\n" % (i, o)
xref = len(out)
out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
out += b"".join(b"%010d 00000 n \n" % o for o in offs)
out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
	len(objs) + 1, xref)
open(pdf, "wb").write(out)

w = h = 32
# A gradient, one filter byte before each row of RGB pixels.
raw = b"".join(b"\0" + b"".join(bytes((x * 8, y * 8, 160))
	for x in range(w)) for y in range(h))
def chunk(t, d):
	return struct.pack(">I", len(d)) + t + d + struct.pack(
		">I", zlib.crc32(t + d) & 0xffffffff)
open(png, "wb").write(b"\x89PNG\r\n\x1a\n" +
	chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
	chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
EOF
printf 'Minutes of the meeting\n\n- ship the demo\n- write the docs\n' \
	>"$DEMO/notes.txt"
# The EICAR test string, in two pieces so that this script is not "infected".
# shellcheck disable=SC2016
printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-' \
	'ANTIVIRUS-TEST-FILE!$H+H*' >"$DEMO/eicar.com"

M="$DEMO/msgs"
cat >"$M/01.eml" <<EOF
From: Alice Example <alice@example.com>
To: Bob Example <bob@$PF_DOMAIN>
Subject: Lunch on Friday?
Date: $(LC_ALL=C date -R)
Message-ID: <demo.plain.$$@example.com>

Hi Bob,

shall we have lunch on Friday? The usual place at noon.

Alice
EOF
mime_mail "Report and pictures" "The report and a picture, as promised." \
	report.pdf application/pdf "$DEMO/report.pdf" \
	notes.txt text/plain "$DEMO/notes.txt" \
	dot.png image/png "$DEMO/dot.png" >"$M/02.eml"
mime_mail "Invoice" "Please see the attached invoice." \
	invoice.zip application/zip "$TESTFILES/clam.zip" >"$M/05.eml"
mime_mail "Archive" "Files attached." \
	files.7z application/x-7z-compressed "$TESTFILES/clam.7z" >"$M/06.eml"
mime_mail "Letter" "The letter, in RTF." \
	letter.rtf application/rtf "$TESTFILES/clam.exe.rtf" >"$M/07.eml"
mime_mail "Document" "The document, old Word format." \
	document.doc application/msword "$TESTFILES/clam.ole.doc" >"$M/08.eml"
mime_mail "Test" "The antivirus test file." \
	eicar.com application/octet-stream "$DEMO/eicar.com" >"$M/09.eml"

cat >"$M/10.eml" <<EOF
From: Deals <deals@example.org>
To: Bob Example <bob@$PF_DOMAIN>
Subject: Cheap pills, today only
Date: $(LC_ALL=C date -R)
Message-ID: <demo.pills.$$@example.org>

Best prices. Unsubscribe never.
EOF
printf 'not really a macro document\n' >"$DEMO/budget.docm"
mime_mail "Budget" "The budget, with macros." \
	budget.docm application/vnd.ms-word.document.macroEnabled.12 \
	"$DEMO/budget.docm" >"$M/11.eml"
sed 's/^From: .*/From: Boss <boss@spammer.example>/' "$M/01.eml" >"$M/12.eml"
printf 'MZ not really a program\n' >"$DEMO/setup.exe"
mime_mail "Setup" "Run this." \
	setup.exe application/octet-stream "$DEMO/setup.exe" >"$M/13.eml"

# Each line: file, expected verdict, description; an envelope sender
# other than alice@example.com follows a "|".
cat >"$DEMO/plan" <<EOF
10.eml tag rule score 6: cheap pills
11.eml quarantine rule: .docm attachment
12.eml reject rule: sender, before DATA|boss@spammer.example
13.eml reject baseline rule: .exe attached
01.eml accept plain text
02.eml accept PDF + text + PNG attached
05.eml reject clam.exe in a zip, base64
06.eml reject clam.exe in a 7z
07.eml reject clam.exe in an RTF
08.eml reject clam.exe in an OLE .doc
09.eml reject EICAR test file
EOF
# Two real messages of the SpamAssassin ham corpus, without their mbox line.
if [ -d "$HAM" ]; then
	n=3
	# shellcheck disable=SC2012
	for f in $(ls "$HAM" | head -2); do
		sed '1{/^From /d;}' "$HAM/$f" >"$M/0$n.eml"
		subj=$(sed -n 's/^Subject: *//p' "$M/0$n.eml" | head -1 |
			cut -c1-27)
		echo "0$n.eml accept ham: $subj" >>"$DEMO/plan"
		n=$((n + 1))
	done
	sort -o "$DEMO/plan" "$DEMO/plan"
else
	echo "(no corpus at $HAM, SHARED=DIR names another:" \
		"the two ham messages are left out)"
fi

say "Sending $(wc -l <"$DEMO/plan" | tr -d ' ') messages to 127.0.0.1:$PF_PORT"
good=0 bad=0 delivered=0 held=0 plain="" tagged=""
printf '%-3s %-32s %-10s %-44s %s\n' "" MESSAGE VERDICT REASON "SMTP REPLY"
while read -r file want desc; do
	from=alice@example.com
	case "$desc" in *"|"*) from=${desc#*|} desc=${desc%|*} ;; esac
	before=$(grep -c ' verdict=' "$MILTER_LOG")
	reply=$(pf_send "$M/$file" "$from" "bob@$PF_DOMAIN")
	# edmilter logs its line before it answers Postfix.
	line=$(grep ' verdict=' "$MILTER_LOG" | sed -n "$((before + 1))p")
	verdict=$(echo "$line" | sed -n 's/.* verdict=\([a-z]*\) .*/\1/p')
	reason=$(echo "$line" | sed -n 's/.* reason="\([^"]*\)".*/\1/p')
	case "$want:$verdict:$reply" in
	accept:accept:250\ *)
		mark=ok
		delivered=$((delivered + 1))
		[ -n "$plain" ] || plain=$(pf_reply_qid "$reply")
		;;
	tag:tag:250\ *)
		mark=ok
		delivered=$((delivered + 1))
		tagged=$(pf_reply_qid "$reply")
		;;
	quarantine:quarantine:250\ *) mark=ok held=$((held + 1)) ;;
	reject:reject:5[0-9][0-9]\ *) mark=ok ;;
	*) mark=BAD ;;
	esac
	[ "$mark" = ok ] && good=$((good + 1)) || bad=$((bad + 1))
	printf '%-3s %-32s %-10s %-44s %s\n' "$mark" "$desc" \
		"${verdict:-none}" "${reason:--}" "$reply"
done <"$DEMO/plan"

say "Where accepted mail landed"
if pf_wait_delivered "$delivered" 30; then
	echo "$delivered messages in the Maildir $PF_MAILDIR:"
else
	echo "only $(pf_delivered_count) of $delivered messages arrived:"
	bad=$((bad + 1))
fi
# shellcheck disable=SC2012
ls -l "$PF_MAILDIR/new" | sed 1d
f=$(pf_maildir_file "$plain")
if [ -n "$f" ]; then
	echo
	echo "Headers edmilter added to the plain text message ($plain):"
	# Each header of ours, with its folded lines.
	sed '/^$/q' "$f" | awk '/^[^ \t]/ {
		show = /^(X-Virus-|X-Spam-|Authentication-Results)/ } show'
fi
f=$(pf_maildir_file "$tagged")
if [ -n "$f" ]; then
	echo
	echo "The tagged message ($tagged):"
	sed '/^$/q' "$f" | grep '^Subject:\|^X-Spam-'
fi
echo
echo "In Postfix's hold queue (quarantine): $(pf_hold_count) message(s)"
[ "$(pf_hold_count)" -eq "$held" ] || bad=$((bad + 1))

say "edmilter's log (each message line starts with Postfix's queue id)"
cat "$MILTER_LOG"
echo
echo "Postfix's log: $PF_LOG"
[ "${DEMO_KEEP:-0}" = 1 ] ||
	echo "(the work folder goes at exit; DEMO_KEEP=1 keeps it)"

say "Stopping edmilter and Postfix"
stop_milter
pf_stop
echo "$good messages as expected, $bad not"
[ "$bad" -eq 0 ]
