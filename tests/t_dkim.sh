#!/bin/sh
# t_dkim.sh: DKIM verification (milter/dkimv.c) through tests/dkim_check,
# every key served by a real Knot DNS on loopback (tests/dns.sh):
#
#   - the RFC 8463 example, ed25519 and rsa-sha256, relaxed and simple;
#   - the Mail::DKIM corpus against its EXPECTED_verifier.tsv, its
#     FAKE_DNS.dat served by Knot (a missing name is NXDOMAIN, an unloadable
#     zone gives SERVFAIL, a server that never answers a timeout); the
#     known deviations come from tests/dkim-deviations.txt and are reported
#     as skips, and fail if the result changes;
#   - messages signed here (tests/dkim_sign.py, dkimpy) with keys made
#     here (openssl): pass, tampered body and header, revoked, too small,
#     rsa-sha1, missing key, DNS timeout, several signatures, l=.
#
# The corpora are read in place from $SHARED: those tests skip when it is
# absent. The signed messages need python3-dkim and python3-nacl.

# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/dns.sh
. "$SRCDIR/tests/dns.sh"

CHECK="$BUILDDIR/tests/dkim_check"
PY=/usr/bin/python3
RFC="$SHARED/corpora/dkim-rfc8463"
MD="$SHARED/corpora/dkim-mail-dkim"
DEVIATIONS="$SRCDIR/tests/dkim-deviations.txt"
K="$WORK/keys"
M="$WORK/msgs"
mkdir -p "$K" "$M"

if [ ! -x "$CHECK" ]; then
	ok 1 "tests/dkim_check is built (make check-programs)"
	done_testing
	exit 1
fi
have_rfc=0 have_md=0 have_signer=0
[ -f "$RFC/dns.txt" ] && have_rfc=1
[ -f "$MD/EXPECTED_verifier.tsv" ] && have_md=1
"$PY" -c 'import dkim, nacl, cryptography' 2>/dev/null &&
	command -v openssl >/dev/null && have_signer=1

# --- Helpers.

# top OUT FILE: the summary line of FILE; sig OUT FILE N: its N-th signature.
top() { grep -F "$2 result=" "$1" | head -1; }
sig() { grep -F "$2 sig=$3 " "$1" | head -1; }
# field LINE KEY: a key=value (or key="value") of a dkim_check line.
field() {
	case "$2" in
	reason | error)
		printf '%s\n' "$1" | sed -n "s/.* $2=\"\([^\"]*\)\".*/\1/p" ;;
	*) printf '%s\n' "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p" ;;
	esac
}

# check OUT ARGS...: runs dkim_check, its output in OUT; an exit other than
# 0 (a setup error, a sanitizer's report) fails a test.
check() {
	o=$1
	shift
	"$CHECK" "$@" >"$o" 2>"$o.err"
	rc=$?
	[ $rc -eq 0 ] && return 0
	ok 1 "dkim_check exited $rc (output in $(basename "$o"))"
	sed 's/^/#   /' "$o.err" | head -20
	return 1
}

# A server on 127.0.0.1 that takes DNS queries (UDP and TCP) and never
# answers: a DNS timeout.
blackhole_start() {
	BH_PORT=$(free_port)
	python3 -c '
import socket, sys, time
p = int(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", p))
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", p))
t.listen(64)
while True:
    time.sleep(60)
' "$BH_PORT" &
	BH_PID=$!
	CLEANUP="$CLEANUP blackhole_stop"
	i=0
	while [ $i -lt 50 ]; do
		python3 -c "import socket
socket.create_connection(('127.0.0.1', $BH_PORT), 0.2)" 2>/dev/null &&
			return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
blackhole_stop() {
	[ -n "${BH_PID:-}" ] || return 0
	kill "$BH_PID" 2>/dev/null
	wait "$BH_PID" 2>/dev/null
	BH_PID=""
}

# rsa_key NAME BITS / ed_key NAME: a key in $K/NAME.pem; prints p=.
rsa_key() {
	openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" \
		-out "$K/$1.pem" 2>/dev/null &&
		openssl pkey -in "$K/$1.pem" -pubout -outform DER | base64 -w0
}
ed_key() {
	openssl genpkey -algorithm ed25519 -out "$K/$1.pem" &&
		openssl pkey -in "$K/$1.pem" -pubout -outform DER |
		tail -c 32 | base64 -w0
}

# sign KEY SELECTOR ALGO CANON [l] <in >out
sign() {
	"$PY" "$SRCDIR/tests/dkim_sign.py" "$K/$1.pem" "$2" auth.example \
		"$3" "$4" ${5:-}
}

# --- Zones. dns_start waits for the SOA of the first zone by name, which
# must load: auth.example sorts before the unloadable blackhole2 zone.

if [ "$have_signer" -eq 1 ]; then
	P_RSA=$(rsa_key rsa 2048)
	P_ED=$(ed_key ed)
	P_SMALL=$(rsa_key small 768)
	P_OTHER=$(rsa_key other 2048)
fi
dns_zone auth.example <<EOF
rsa._domainkey TXT $(dns_split_txt "v=DKIM1; k=rsa; p=${P_RSA:-}")
ed._domainkey TXT "v=DKIM1; k=ed25519; p=${P_ED:-}"
small._domainkey TXT $(dns_split_txt "v=DKIM1; k=rsa; p=${P_SMALL:-}")
revoked._domainkey TXT "v=DKIM1; k=rsa; p="
nodata._domainkey A 127.0.0.1
EOF

[ "$have_rfc" -eq 1 ] && dns_zone football.example.com <"$RFC/dns.txt"

# FAKE_DNS.dat: "NAME VALUE", "NAME NXDOMAIN" (left out: Knot answers
# NXDOMAIN), "NAME ~~SERVFAIL~~" (a zone Knot cannot load: it answers
# SERVFAIL), "NAME ~~Query timed out~~" (the black hole, below).
TEMP_DOMAINS="" TIMEOUT_DOMAINS=""
if [ "$have_md" -eq 1 ]; then
	mkdir -p "$WORK/fake"
	grep -v '^#' "$MD/FAKE_DNS.dat" | grep . >"$WORK/fake.dat"
	while read -r name value; do
		zone=${name#*._domainkey.}
		case "$value" in
		NXDOMAIN) continue ;;
		"~~Query timed out~~")
			TIMEOUT_DOMAINS="$TIMEOUT_DOMAINS $zone"
			TEMP_DOMAINS="$TEMP_DOMAINS $zone"
			continue ;;
		"~~SERVFAIL~~")
			TEMP_DOMAINS="$TEMP_DOMAINS $zone"
			echo "@ CNAME unloadable.example." >"$WORK/fake/$zone"
			continue ;;
		'""') txt='""' ;;
		*) txt=$(dns_split_txt "$value") ;;
		esac
		echo "$name. TXT $txt" >>"$WORK/fake/$zone"
	done <"$WORK/fake.dat"
	for f in "$WORK"/fake/*; do
		dns_zone "$(basename "$f")" <"$f"
	done
fi

if ! dns_start; then
	ok 1 "knotd serves the test zones"
	done_testing
	exit 1
fi
NS="127.0.0.1@$DNS_PORT"
blackhole_start
ok $? "a DNS server that never answers listens on 127.0.0.1:$BH_PORT"
for z in "$DNS_DIR"/*.zone; do
	z=$(basename "$z" .zone)
	case " $TEMP_DOMAINS " in *" $z "*) continue ;; esac
	kdig +short +time=1 -p "$DNS_PORT" @127.0.0.1 SOA "$z" | grep -q .
	ok $? "knotd serves zone $z"
done

# --- RFC 8463: the same message signed ed25519 and rsa-sha256 (a 1024-bit
# key), relaxed/relaxed and simple/simple.

if [ "$have_rfc" -eq 1 ]; then
	out="$WORK/rfc.out"
	check "$out" -n "$NS" "$RFC/rfc8463-relaxed.msg" \
		"$RFC/rfc8463-simple.msg" "$RFC/unsigned.msg"
	for c in relaxed simple; do
		f="$RFC/rfc8463-$c.msg"
		is "$(field "$(top "$out" "$f")" result)" pass \
			"rfc8463 $c: result pass"
		s1=$(sig "$out" "$f" 1)
		s2=$(sig "$out" "$f" 2)
		is "$(field "$s1" a) $(field "$s1" result) $(field "$s1" bits)" \
			"ed25519-sha256 pass 256" "rfc8463 $c: ed25519 passes"
		is "$(field "$s2" a) $(field "$s2" result) $(field "$s2" bits)" \
			"rsa-sha256 pass 1024" "rfc8463 $c: rsa-sha256 passes"
		is "$(field "$s1" d) $(field "$s1" s) $(field "$s2" s)" \
			"football.example.com brisbane test" \
			"rfc8463 $c: d= and s= reported"
	done
	is "$(field "$(top "$out" "$RFC/unsigned.msg")" result)" none \
		"rfc8463 unsigned message: result none"
else
	skip "RFC 8463 vectors: $RFC is absent"
fi

# --- Messages signed here.

base_msg() {
	# Folded and oddly spaced headers: c=simple needs them byte-exact.
	printf 'From: Sender <sender@auth.example>\n'
	printf 'To:  rcpt@example.net\n'
	printf 'Subject: a folded\n\t subject  with  spaces\n'
	printf 'Date: Mon, 1 Jan 2024 00:00:00 +0000\n'
	printf 'Message-ID: <%s@auth.example>\n' "$1"
	printf '\n'
	printf 'Line one.\n'
	printf 'Line  two, spaced  \t\n'
	printf '\n'
	printf 'Last line.\n'
	printf '\n\n'
}

if [ "$have_signer" -eq 1 ]; then
	base_msg pass-rsa | sign rsa rsa rsa-sha256 relaxed/relaxed \
		>"$M/pass-rsa"
	base_msg pass-ed | sign ed ed ed25519-sha256 simple/simple >"$M/pass-ed"
	base_msg simple-rsa | sign rsa rsa rsa-sha256 simple/simple \
		>"$M/simple-rsa"
	sed 's/^Line one\./Line 1./' "$M/pass-rsa" >"$M/bad-body"
	sed 's/^Line one\./Line 1./' "$M/pass-ed" >"$M/bad-body-ed"
	sed 's/^Subject: a folded/Subject: A folded/' "$M/pass-rsa" \
		>"$M/bad-header"
	base_msg revoked | sign rsa revoked rsa-sha256 relaxed/relaxed \
		>"$M/revoked"
	base_msg small | sign small small rsa-sha256 relaxed/relaxed \
		>"$M/small"
	base_msg sha1 | sign rsa rsa rsa-sha1 relaxed/relaxed >"$M/sha1"
	base_msg missing | sign rsa missing rsa-sha256 relaxed/relaxed \
		>"$M/missing"
	base_msg nodata | sign rsa nodata rsa-sha256 relaxed/relaxed \
		>"$M/nodata"
	# Several: a good ed25519 signature above one made with the wrong key.
	base_msg several | sign other rsa rsa-sha256 relaxed/relaxed |
		sign ed ed ed25519-sha256 relaxed/relaxed >"$M/several"
	base_msg bad-first | sign ed ed ed25519-sha256 relaxed/relaxed |
		sign other rsa rsa-sha256 relaxed/relaxed >"$M/bad-first"
	# l=: text added after signing; l= over the whole body (relaxed,
	# trailing spaces and blank lines); blank lines added under simple.
	base_msg partial | sign rsa rsa rsa-sha256 relaxed/relaxed l \
		>"$M/partial"
	printf 'Added after signing.\n' >>"$M/partial"
	base_msg l-whole | sign rsa rsa rsa-sha256 relaxed/relaxed l \
		>"$M/l-whole"
	base_msg l-blank | sign rsa rsa rsa-sha256 simple/simple l \
		>"$M/l-blank"
	printf '\n\n\n' >>"$M/l-blank"
	base_msg none >"$M/none"
	{ printf 'DKIM-Signature: this is not a tag list\n'; base_msg junk; } \
		>"$M/junk"
	# A junk signature must not hide a good one.
	{ printf 'DKIM-Signature: v=1; junk\n'; cat "$M/pass-ed"; } \
		>"$M/junk-and-good"

	own="pass-rsa pass-ed simple-rsa bad-body bad-body-ed bad-header
		revoked small sha1 missing nodata several bad-first partial
		l-whole l-blank none junk junk-and-good"
	files=""
	for n in $own; do files="$files $M/$n"; done
	out="$WORK/own.out"
	# shellcheck disable=SC2086
	check "$out" -n "$NS" -j 8 $files
	r() { field "$(top "$out" "$M/$1")" result; }
	s() { field "$(sig "$out" "$M/$1" "$2")" "$3"; }

	is "$(r pass-rsa)" pass "rsa-sha256 2048 relaxed: pass"
	is "$(s pass-rsa 1 bits) $(s pass-rsa 1 a) $(s pass-rsa 1 d)" \
		"2048 rsa-sha256 auth.example" \
		"rsa-sha256: key size, algorithm and d= reported"
	is "$(s pass-rsa 1 s)" rsa "rsa-sha256: s= reported"
	b=$(sed -n '/^DKIM-Signature/,/^[^ \t]/p' "$M/pass-rsa" | tr -d ' \t\n' |
		sed -n 's/.*;b=\(........\).*/\1/p')
	is "$(s pass-rsa 1 b)" "$b" "the first 8 characters of b= reported"
	is "$(s pass-rsa 1 partial)" 0 "no l=: the whole body is signed"
	is "$(r pass-ed) $(s pass-ed 1 bits)" "pass 256" \
		"ed25519 simple/simple with folded headers: pass"
	is "$(r simple-rsa)" pass "rsa-sha256 simple/simple: pass"
	is "$(r bad-body) $(s bad-body 1 reason)" "fail body hash mismatch" \
		"body changed after signing: fail (body hash)"
	is "$(r bad-body-ed)" fail "ed25519, body changed: fail"
	is "$(r bad-header)" fail "header changed after signing: fail"
	like "$(s bad-header 1 reason)" "signature" \
		"header changed: the reason is the signature"
	is "$(r revoked)" permerror "revoked key (empty p=): permerror"
	like "$(s revoked 1 reason)" "revoked" "revoked: the reason says so"
	is "$(r small) $(s small 1 bits)" "policy 768" \
		"768-bit key: policy, not pass"
	like "$(s small 1 reason)" "key too small" "768-bit key: reason"
	is "$(r sha1) $(s sha1 1 a)" "policy rsa-sha1" \
		"rsa-sha1 (RFC 8301): policy, not pass"
	is "$(r missing)" permerror "missing key (NXDOMAIN): permerror"
	like "$(s missing 1 reason)" "not found" "missing key: reason"
	is "$(r nodata)" permerror "key name without TXT (NODATA): permerror"
	is "$(r several) $(s several 1 result) $(s several 2 result)" \
		"pass pass fail" "two signatures, one bad: each judged, pass"
	is "$(field "$(top "$out" "$M/several")" nsigs)" 2 \
		"two signatures counted"
	is "$(r bad-first) $(s bad-first 1 result) $(s bad-first 2 result)" \
		"pass fail pass" "the bad signature first: still pass"
	is "$(r partial) $(s partial 1 partial)" "pass 1" \
		"l= shorter than the body: pass, partial_body set"
	is "$(r l-whole) $(s l-whole 1 partial)" "pass 0" \
		"l= over the whole (relaxed) body: not partial"
	is "$(r l-blank) $(s l-blank 1 partial)" "pass 0" \
		"simple l=, only blank lines added: not partial"
	is "$(r none) $(field "$(top "$out" "$M/none")" nsigs)" "none 0" \
		"no signature: none"
	is "$(r junk) $(s junk 1 result)" "permerror permerror" \
		"an unparsable DKIM-Signature: permerror"
	j="junk-and-good"
	is "$(r $j) $(s $j 1 result) $(s $j 2 result)" "pass permerror pass" \
		"a junk signature does not hide a good one"
	is "$(tail -1 "$out")" "threads=8 mismatches=0" \
		"8 threads sharing one verifier: the same results"

	# The checker's policy: bigger minimum, or smaller.
	check "$WORK/k.out" -n "$NS" -k 512 "$M/small"
	is "$(field "$(top "$WORK/k.out" "$M/small")" result)" pass \
		"768-bit key with min_key_bits 512: pass"
	check "$WORK/k.out" -n "$NS" -k 4096 "$M/pass-rsa"
	is "$(field "$(top "$WORK/k.out" "$M/pass-rsa")" result)" policy \
		"2048-bit key with min_key_bits 4096: policy"
	check "$WORK/max.out" -n "$NS" -m 1 "$M/bad-first"
	o="$WORK/max.out"
	is "$(field "$(top "$o" "$M/bad-first")" result)" fail \
		"max_sigs 1: the first (bad) signature decides"
	is "$(field "$(sig "$o" "$M/bad-first" 2)" result)" neutral \
		"max_sigs 1: the second signature is not checked"
	# Past max_sigs no key is looked up: a nameserver that never answers
	# costs nothing for the junk signature and the ignored good one.
	t0=$(date +%s)
	check "$WORK/max2.out" -n "127.0.0.1@$BH_PORT" -t 3000 -m 1 \
		"$M/junk-and-good"
	t1=$(date +%s)
	is "$(field "$(sig "$WORK/max2.out" "$M/junk-and-good" 2)" result)" \
		neutral "max_sigs 1: the good signature past it is neutral"
	[ $((t1 - t0)) -lt 3 ]
	ok $? "max_sigs 1: no key lookup past it ($((t1 - t0)) s, timeout 3 s)"
	check "$WORK/cut.out" -n "$NS" -l 100 "$M/pass-rsa"
	o=$(top "$WORK/cut.out" "$M/pass-rsa")
	is "$(field "$o" result)" neutral \
		"a message cut at the size limit: neutral"
	like "$(field "$o" error)" "size limit" "cut message: the error says so"

	# A nameserver that never answers: temperror, in bounded time.
	t0=$(date +%s)
	check "$WORK/bh.out" -n "127.0.0.1@$BH_PORT" -t 1000 "$M/pass-rsa"
	t1=$(date +%s)
	is "$(field "$(top "$WORK/bh.out" "$M/pass-rsa")" result)" temperror \
		"DNS timeout: temperror"
	like "$(field "$(sig "$WORK/bh.out" "$M/pass-rsa" 1)" reason)" "DNS" \
		"DNS timeout: the reason says DNS"
	[ $((t1 - t0)) -le 5 ]
	ok $? "DNS timeout: answered in $((t1 - t0)) s with a 1 s timeout"
else
	skip "signed messages: python3-dkim, python3-nacl or openssl missing"
fi

# --- The Mail::DKIM corpus.

# expect FILE: the result EXPECTED_verifier.tsv gives, in our terms:
# "invalid" is permerror, or temperror where the key's DNS times out or
# fails (RFC 6376 6.1.2: a temporary failure).
expect() {
	want=$(awk -v f="$1" '$1 == f { print $2 }' "$MD/EXPECTED_verifier.tsv")
	for d in $TEMP_DOMAINS; do
		grep -qF "d=$d;" "$MD/corpus/$1" && want=temperror
	done
	case "$want" in
	invalid) echo permerror ;;
	*) echo "$want" ;;
	esac
}

# matches WANT GOT REASON: pass is also met by policy for rsa-sha1 or a
# small key, which is given only to a signature that verified (see
# dkimv_verified).
matches() {
	[ "$1" = "$2" ] && return 0
	[ "$1" = pass ] && [ "$2" = policy ] || return 1
	case "$3" in rsa-sha1* | "key too small"*) return 0 ;; esac
	return 1
}

corpus_case() {
	f=$1 out=$2
	line=$(top "$out" "$MD/corpus/$f")
	got=$(field "$line" result)
	want=$(expect "$f")
	# The reason of the signature that gave the result.
	why=$(grep -F "$MD/corpus/$f sig=" "$out" |
		grep -F " result=$got " | head -1)
	why=$(field "$why" reason)
	dev=$(awk -v f="$f" '$1 == f { $1 = ""; print substr($0, 2) }' \
		"$DEVIATIONS")
	if ! grep -qi '^DKIM-Signature:' "$MD/corpus/$f"; then
		is "$got" none "$f: legacy DomainKeys only, not verified: none"
	elif [ -n "$dev" ]; then
		dres=${dev%% *}
		if matches "$want" "$got" "$why"; then
			ok 1 "$f: $got as expected, yet listed as a deviation"
		elif [ "$got" != "$dres" ]; then
			ok 1 "$f: deviation changed: $got ($why), listed $dres"
		else
			skip "$f: $got, expected $want: ${dev#* }"
		fi
	else
		matches "$want" "$got" "$why"
		ok $? "$f: $got (${why:-no signature}), expected $want"
		[ -z "$got" ] && echo "#   no result for $f"
	fi
}

if [ "$have_md" -eq 1 ]; then
	out="$WORK/corpus.out"
	late=""
	files=""
	for f in $(awk '{ print $1 }' "$MD/EXPECTED_verifier.tsv"); do
		t=0
		for d in $TIMEOUT_DOMAINS; do
			grep -qF "d=$d;" "$MD/corpus/$f" && t=1
		done
		if [ $t -eq 1 ]; then late="$late $MD/corpus/$f"; else
			files="$files $MD/corpus/$f"; fi
	done
	# shellcheck disable=SC2086
	check "$out" -n "$NS" $files
	if [ -n "$late" ]; then
		# shellcheck disable=SC2086
		check "$out.late" -n "127.0.0.1@$BH_PORT" -t 1000 $late &&
			cat "$out.late" >>"$out"
	fi
	for f in $(awk '{ print $1 }' "$MD/EXPECTED_verifier.tsv"); do
		corpus_case "$f" "$out"
	done

	# v=0.5 (a draft) fails before the key is fetched: the same files as
	# v=1 show the key and tag checks (the signature itself then fails).
	mkdir -p "$WORK/v1"
	v1=""
	invalid=$(awk '$2 == "invalid" { print $1 }' "$MD/EXPECTED_verifier.tsv")
	for f in $invalid; do
		grep -q '^DKIM-Signature: v=0\.5;' "$MD/corpus/$f" || continue
		sed 's/^DKIM-Signature: v=0\.5;/DKIM-Signature: v=1;/' \
			"$MD/corpus/$f" >"$WORK/v1/$f"
		v1="$v1 $WORK/v1/$f"
	done
	# shellcheck disable=SC2086
	check "$WORK/v1.out" -n "$NS" $v1
	for f in $v1; do
		got=$(field "$(top "$WORK/v1.out" "$f")" result)
		why=$(field "$(sig "$WORK/v1.out" "$f" 1)" reason)
		f=$(basename "$f")
		case "$got:$why" in
		permerror:*signature\ version* | permerror:*version\ missing* | \
			permerror:*verification* | permerror:)
			ok 1 "$f as v=1: $got ($why), want a key or tag error" ;;
		permerror:*) ok 0 "$f as v=1: permerror ($why)" ;;
		*) ok 1 "$f as v=1: $got ($why), want permerror" ;;
		esac
	done
else
	skip "Mail::DKIM corpus: $MD is absent"
fi

done_testing
