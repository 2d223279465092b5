#!/bin/sh
# t_spf.sh: SPF (milter/spf.c) against a real DNS server (Knot, tests/dns.sh),
# through the driver tests/spf_check.
#
# 1. The RFC 7208 test suite (pyspf's rfc7208-tests.yml, read in place from
#    ../shared/corpora/spf; skipped when absent): one TAP line per test.
#    Each scenario's zone data is served by its own Knot instance: a zone
#    per top-level domain (a root zone would do, but dns_start's glob
#    skips the file "..zone" that dns_zone writes for "."); a name whose
#    queries must time out (TIMEOUT) gets a zone of its own that Knot
#    cannot load, so it answers SERVFAIL (names below it get zones of
#    their own). A test listed in tests/spf-deviations.txt is a SKIP
#    carrying the reason. Four threads run each scenario on one checker.
# 2. Our own cases: limits, input checks, DNS failures, the Received-SPF
#    text.
#
# The YAML is read with /usr/bin/python3 and Debian's python3-yaml.
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tests/dns.sh"

SPFCHECK="$BUILDDIR/tests/spf_check"
SUITE="$SHARED/corpora/spf/rfc7208-tests.yml"
DEVIATIONS="$SRCDIR/tests/spf-deviations.txt"
PY=/usr/bin/python3

if [ ! -x "$SPFCHECK" ]; then
	echo "Bail out! $SPFCHECK is not built (make check-programs)"
	exit 1
fi
for t in knotd kdig; do
	if ! command -v $t >/dev/null; then
		echo "Bail out! $t not found (Debian: knot, knot-dnsutils)"
		exit 1
	fi
done

# dns_ready ZONE: waits until the server answers for ZONE (dns_start's own
# wait asks kdig for +tries, which kdig 3.2 does not know, and so returns
# at once).
dns_ready() {
	i=0
	while [ $i -lt 50 ]; do
		kdig +retry=0 +time=1 -p "$DNS_PORT" @127.0.0.1 SOA "$1" \
			2>/dev/null | grep -q 'status: NOERROR' && return 0
		sleep 0.1
		i=$((i + 1))
	done
	echo "# knotd does not answer for $1:"
	sed 's/^/#   /' "$DNS_DIR/knot.log"
	return 1
}

# serve DIR: a fresh server for the zones of DIR/zones/*.
serve() {
	dns_stop
	rm -rf "$DNS_DIR"
	for z in "$1"/zones/*; do
		dns_zone "$(basename "$z")" <"$z"
	done
	dns_start && dns_ready "$(cat "$1/ready")"
}

# The suite as files: per scenario NN/, zones/ZONE (records), ready (a
# zone that loads), cases (NAME HELO IP FROM, %XX-encoded) and expect
# (NAME and the acceptable results).
suite_prepare() {
	"$PY" - "$SUITE" "$WORK/suite" <<'EOF'
import os, re, sys, urllib.parse, yaml

src, out = sys.argv[1], sys.argv[2]
ALWAYS = {"com", "net", "org", "arpa"}
SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")

def label(l):
    return "".join(chr(b) if chr(b) in SAFE else "\\%03d" % b
                   for b in l.encode())

def name(n):
    return ".".join(label(l) for l in n.rstrip(".").split(".")) + "."

def txt(v):
    parts = v if isinstance(v, list) else [v]
    chunks = []
    for p in parts:
        b = p.encode("utf-8")
        pieces = [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]
        for c in pieces:
            chunks.append('"' + "".join(
                chr(x) if 0x20 <= x < 0x7f and x not in (0x22, 0x5c)
                else "\\%03d" % x for x in c) + '"')
    return " ".join(chunks) if chunks else '""'

def rdata(t, v):
    if t in ("TXT", "SPF"):
        return txt(v)
    if t == "MX":
        return "%d %s" % (v[0], name(v[1]))
    if t in ("PTR", "CNAME"):
        return name(v)
    return str(v)

def records(recs):
    """pyspf's rules: SPF data doubles as TXT unless the name has TXT
    (even "NONE"). Returns whether it answers TXT, and its records."""
    has_txt = any(isinstance(r, dict) and "TXT" in r for r in recs)
    lines = []
    for r in recs:
        if not isinstance(r, dict):
            continue
        for t, v in r.items():
            if v == "NONE":
                continue
            lines.append((t, rdata(t, v)))
            if t == "SPF" and not has_txt:
                lines.append(("TXT", rdata(t, v)))
    return any(t == "TXT" for t, _ in lines), lines

def tlds(doc):
    """Top-level domains the scenario may query, to serve NXDOMAIN from."""
    found = set(ALWAYS)
    text = [k for k in doc["zonedata"]]
    for recs in doc["zonedata"].values():
        for r in recs:
            if isinstance(r, dict):
                for v in r.values():
                    text += [str(x) for x in (v if isinstance(v, list)
                                              else [v])]
    for t in doc["tests"].values():
        text += [str(t.get("helo", "")), str(t.get("mailfrom", ""))]
    for t in text:
        found |= {m.lower() for m in
                  re.findall(r"\.([A-Za-z0-9-]*[A-Za-z][A-Za-z0-9-]*)\.?"
                             r"(?=$|[\s/:])", t)}
    return found

for n, doc in enumerate(yaml.safe_load_all(open(src, encoding="utf-8"))):
    d = os.path.join(out, "%02d" % n)
    os.makedirs(os.path.join(d, "zones"))
    zd = {k.lower().rstrip("."): v for k, v in doc["zonedata"].items()}
    data = {k: records(v) for k, v in zd.items()}
    # A TIMEOUT name times out for the types it has no data for; we only
    # ever ask for TXT among those, so one with TXT data answers.
    broken = {k for k, v in zd.items() if "TIMEOUT" in v and not data[k][0]}
    zones = tlds(doc) | {k.split(".")[-1] for k in zd} | broken
    zones |= {k for k in zd for b in broken if k.endswith("." + b)}
    files = {z: [] for z in zones}
    for k, (_, lines) in data.items():
        z = max((z for z in zones if k == z or k.endswith("." + z)),
                key=len)
        files[z] += ["%s 60 %s %s" % (name(k), t, r) for t, r in lines]
    for z in zones:
        with open(os.path.join(d, "zones", z), "w") as f:
            if z in broken:
                f.write("; unloadable on purpose: knotd answers SERVFAIL\n"
                        "@ TXT\n")
            else:
                f.write("".join(l + "\n" for l in files[z]))
    with open(os.path.join(d, "ready"), "w") as f:
        f.write("com\n")
    q = lambda s: urllib.parse.quote(str(s), safe="@.:[]")
    with open(os.path.join(d, "cases"), "w") as c, \
         open(os.path.join(d, "expect"), "w") as e:
        for t, v in doc["tests"].items():
            c.write("%s\t%s\t%s\t%s\n" % (t, q(v.get("helo", "")),
                                           q(v["host"]),
                                           q(v.get("mailfrom", ""))))
            res = v["result"] if isinstance(v["result"], list) \
                else [v["result"]]
            e.write("%s\t%s\n" % (t, " ".join(res)))
    with open(os.path.join(d, "title"), "w") as f:
        f.write(doc["description"] + "\n")
EOF
}

# deviation NAME: why the suite's test NAME is a known deviation, if it is.
deviation() {
	[ -f "$DEVIATIONS" ] || return 0
	awk -v n="$1" '$1 == n { sub(/^[^ \t]+[ \t]+/, ""); print; exit }' \
		"$DEVIATIONS"
}

# suite_report DIR: one TAP line per test of the scenario in DIR.
suite_report() {
	title=$(cat "$1/title")
	while IFS='	' read -r name want; do
		echo "$name" >>"$WORK/suite/seen"
		got=$(awk -F'\t' -v n="$name" '$1 == n { print $2 }' "$1/out")
		why=$(awk -F'\t' -v n="$name" '$1 == n { print $3 }' "$1/out")
		dev=$(deviation "$name")
		case " $want " in
		*" $got "*) st=0 ;;
		*) st=1 ;;
		esac
		if [ -n "$dev" ] && [ $st -eq 0 ]; then
			T_N=$((T_N + 1))
			echo "ok $T_N - $title: $name # TODO passes, but is" \
				"listed in spf-deviations.txt: remove it"
		elif [ -n "$dev" ]; then
			skip "$title: $name: got ${got:-nothing}," \
				"suite wants $want: $dev"
		else
			ok $st "$title: $name: $got"
			[ $st -eq 0 ] || echo "#   want $want; reason: $why"
		fi
	done <"$1/expect"
}

suite_run() {
	if [ ! -f "$SUITE" ]; then
		skip "RFC 7208 suite: $SUITE not found (../shared/corpora)"
		return
	fi
	if ! "$PY" -c 'import yaml' 2>/dev/null; then
		skip "RFC 7208 suite: $PY cannot import yaml (python3-yaml)"
		return
	fi
	suite_prepare || { ok 1 "RFC 7208 suite: read $SUITE"; return; }
	for d in "$WORK"/suite/*/; do
		d=${d%/}
		if ! serve "$d"; then
			ok 1 "$(cat "$d/title"): DNS server starts"
			continue
		fi
		"$SPFCHECK" -j 4 -n "127.0.0.1@$DNS_PORT" -t 1000 \
			batch "$d/cases" >"$d/out" 2>"$d/err"
		ok $? "$(cat "$d/title"): 4 threads, same results"
		grep '^#' "$d/out"
		suite_report "$d"
	done
	dns_stop
	stale=""
	[ -f "$DEVIATIONS" ] && while read -r name _; do
		case "$name" in '' | '#'*) continue ;; esac
		grep -qx -- "$name" "$WORK/suite/seen" || stale="$stale $name"
	done <"$DEVIATIONS"
	is "$stale" "" "spf-deviations.txt names only tests of the suite"
}

# Our own zones: example.org, and broken.example.org that does not load.
own_zones() {
	mkdir -p "$WORK/own/zones"
	cat >"$WORK/own/zones/org" <<'Z'
v4.example.org. TXT "v=spf1 ip4:192.0.2.0/24 -all"
mta.example.org. TXT "v=spf1 ip4:192.0.2.10 -all"
mta.example.org. A 192.0.2.10
h1.example.org. A 198.51.100.1
h2.example.org. A 198.51.100.2
h3.example.org. A 198.51.100.3
h4.example.org. A 198.51.100.4
h5.example.org. A 198.51.100.5
four.example.org. TXT "v=spf1 a:h1.example.org a:h2.example.org a:h3.example.org a:h4.example.org"
five.example.org. TXT "v=spf1 a:h1.example.org a:h2.example.org a:h3.example.org a:h4.example.org a:h5.example.org"
at10.example.org. TXT "v=spf1 include:four.example.org include:four.example.org ip4:192.0.2.7 -all"
over10.example.org. TXT "v=spf1 include:four.example.org include:five.example.org ip4:192.0.2.7 -all"
void2.example.org. TXT "v=spf1 a:nx1.example.org a:nx2.example.org ip4:192.0.2.0/24 -all"
void3.example.org. TXT "v=spf1 a:nx1.example.org a:nx2.example.org a:nx3.example.org ip4:192.0.2.0/24 -all"
servfail.example.org. TXT "v=spf1 include:broken.example.org ip4:192.0.2.0/24 -all"
big.example.org. TXT (
	"v=spf1 exists:%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}"
	"%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}%{l}"
	".example.org ip4:192.0.2.0/24 -all" )
Z
	printf '; unloadable on purpose\n@ TXT\n' >"$WORK/own/zones/broken.example.org"
	: >"$WORK/own/zones/com"
	echo org >"$WORK/own/ready"
}

# chk [spf_check args]: runs a check with the debug log; sets $out, $log.
chk() {
	"$SPFCHECK" -v -x -n "${NS:-127.0.0.1@$DNS_PORT}" -t "${TMO:-1000}" \
		-r mx.example.org "$@" >"$WORK/out" 2>"$WORK/log"
	out=$(cat "$WORK/out")
	log=$(cat "$WORK/log")
}

# field NAME: a field of the last check's output.
field() {
	printf '%s\n' "$out" | sed -n "s/^$1=//p"
}

# printable TEXT: 0 if TEXT is printable ASCII only.
printable() {
	! printf '%s' "$1" | LC_ALL=C grep -q '[^ -~]'
}

own_addresses() {
	chk mailfrom ::ffff:192.0.2.7 mta.example.org user@v4.example.org
	is "$(field result)" pass "IPv4-mapped client ::ffff:192.0.2.7: ip4: pass"
	like "$(field received)" ' client-ip=192\.0\.2\.7;' \
		"Received-SPF has the client as IPv4"
	chk mailfrom 2001:db8::7 mta.example.org user@v4.example.org
	is "$(field result)" fail "a plain IPv6 client does not pass ip4:"
	chk mailfrom 192.0.2.7 mta.example.org user@v4.example.org
	is "$(field received)" 'pass (domain of user@v4.example.org designates 192.0.2.7 as permitted sender) client-ip=192.0.2.7; envelope-from="user@v4.example.org"; helo=mta.example.org; receiver=mx.example.org; identity=mailfrom' \
		"Received-SPF value, RFC 7208 9.1 form"
}

own_null_sender() {
	chk mailfrom 192.0.2.10 mta.example.org ""
	is "$(field result)/$(field domain)" pass/mta.example.org \
		"null sender: checked as postmaster@HELO"
	like "$(field received)" \
		'envelope-from="postmaster@mta\.example\.org"; .*mailfrom$' \
		"null sender: Received-SPF names postmaster@HELO"
	chk mailfrom 192.0.2.11 mta.example.org ""
	is "$(field result)" fail "null sender: the HELO domain's policy rules"
	chk mailfrom 192.0.2.10 "[192.0.2.10]" ""
	is "$(field result)" none "null sender, address literal HELO: none"
	chk helo 192.0.2.10 mta.example.org
	is "$(field result)" pass "HELO identity: pass"
	like "$(field received)" '^pass \(.*\) client-ip=192\.0\.2\.10; '\
'helo=mta\.example\.org; receiver=mx\.example\.org; identity=helo$' \
		"HELO identity: Received-SPF without envelope-from"
	like "$log" 'spf: identity=helo domain=mta\.example\.org .*=pass' \
		"a valid HELO reaches libspf2 (the log says so)"
}

# One HELO that must be refused; $2 describes it.
own_bad_helo() {
	"$SPFCHECK" -x valid "$1" >/dev/null
	is $? 1 "spf_helo_valid refuses $2"
	chk helo 192.0.2.10 "$1"
	is "$(field result)" none "HELO $2: none"
	if printf '%s' "$log" | grep -q 'spf: identity=helo domain=' ||
		! printf '%s' "$log" | grep -q 'HELO is not a valid host'; then
		ok 1 "HELO $2: never reaches libspf2"
		printf '%s\n' "$log" | sed 's/^/#   /'
	else
		ok 0 "HELO $2: never reaches libspf2"
	fi
	chk mailfrom 192.0.2.7 "$1" user@v4.example.org
	rcv=$(field received)
	is "$(field result)" pass "HELO $2: MAIL FROM still checked"
	case "$rcv" in
	*helo=* | *Injected* | *'"example"'*)
		ok 1 "HELO $2: not in Received-SPF" ;;
	*) ok 0 "HELO $2: not in Received-SPF" ;;
	esac
	printable "$rcv"
	ok $? "HELO $2: Received-SPF printable"
}

own_helos() {
	long=$(printf 'a%.0s' $(seq 63))
	own_bad_helo "bad%20helo.example.org" "with a space"
	own_bad_helo "mta.example.org%0D%0AX-Injected:%20yes" "with CR/LF"
	own_bad_helo "mta.%22example%22.org" "with quotes"
	own_bad_helo "mta.example.org;x=y" "with a semicolon"
	own_bad_helo "mta%01.example.org" "with a control character"
	own_bad_helo "$long.$long.$long.$long.org" "of 259 bytes"
	own_bad_helo "localhost" "without a dot"
	own_bad_helo "mta.example.123" "with a numeric TLD"
	own_bad_helo "" "empty"
	own_bad_helo "[192.0.2.1" "half an address literal"
	for h in mta.example.org a-b_c.example.org "[192.0.2.1]" \
		"[IPv6:2001:db8::1]"; do
		"$SPFCHECK" valid "$h" >/dev/null
		ok $? "spf_helo_valid accepts $h"
	done
	"$SPFCHECK" valid "$long.$long.$long.$(printf 'a%.0s' $(seq 57)).org" \
		>/dev/null
	ok $? "spf_helo_valid accepts 253 bytes"
}

own_limits() {
	chk mailfrom 192.0.2.7 mta.example.org user@at10.example.org
	is "$(field result)" pass "10 DNS terms across includes: pass"
	chk mailfrom 192.0.2.7 mta.example.org user@over10.example.org
	is "$(field result)" permerror "11 DNS terms across includes: permerror"
	like "$(field reason)" 'more than 10 DNS-querying' "... saying why"
	chk mailfrom 192.0.2.7 mta.example.org user@void2.example.org
	is "$(field result)" pass "2 void lookups: pass"
	chk mailfrom 192.0.2.7 mta.example.org user@void3.example.org
	is "$(field result)" permerror "3 void lookups: permerror"
	like "$(field reason)" 'more than 2 void DNS lookups' "... saying why"
	chk mailfrom 192.0.2.7 mta.example.org user@big.example.org
	is "$(field result)" permerror "a term with 30 macros: permerror"
	like "$log" 'spf: big\.example\.org: record refused: ' \
		"... and it never reaches libspf2's compiler"
}

own_dns_errors() {
	chk mailfrom 192.0.2.7 mta.example.org user@servfail.example.org
	is "$(field result)" temperror "include of a SERVFAIL name: temperror"
	# Nothing listens there: each query waits for its timeout.
	NS="127.0.0.1@$(free_port)" TMO=300
	chk mailfrom 192.0.2.7 mta.example.org user@v4.example.org
	is "$(field result)" temperror "DNS server down: temperror"
	chk helo 192.0.2.10 mta.example.org
	is "$(field result)" temperror "DNS server down, HELO check: temperror"
	chk helo 192.0.2.10 "bad%20helo.example.org"
	is "$(field result)" none "DNS server down, bad HELO: none, no lookup"
	unset NS TMO
}

own_senders() {
	chk mailfrom 192.0.2.7 mta.example.org 'a%22b%5Cc;(d)@v4.example.org'
	rcv=$(field received)
	is "$(field result)" pass "sender with quote, backslash, parentheses"
	like "$rcv" ' envelope-from="a\\"b\\\\c;\(d\)@v4\.example\.org"; ' \
		"... quoted and escaped in Received-SPF"
	like "$rcv" '^pass \([^()\\]*\) client-ip=' "... and out of its comment"
	chk mailfrom 192.0.2.7 mta.example.org 'a%0D%0Ab@v4.example.org'
	rcv=$(field received)
	is "$(field result)" none "sender with CR/LF: none"
	printable "$rcv"
	ok $? "... Received-SPF printable"
	case "$rcv" in *envelope-from*) st=1 ;; *) st=0 ;; esac
	ok $st "... and without envelope-from"
	chk mailfrom 192.0.2.7 mta.example.org \
		"$(printf 'x%.0s' $(seq 65))@v4.example.org"
	is "$(field result)" none "local part of 65 bytes: none"
	chk mailfrom 192.0.2.7 mta.example.org 'user@v4.example.org.%0D%0A'
	is "$(field result)" none "sender domain with CR/LF: none"
	chk mailfrom 192.0.2.7 mta.example.org '@v4.example.org'
	is "$(field result)/$(field domain)" pass/v4.example.org \
		"empty local part: checked as postmaster"
}

own_run() {
	own_zones
	if ! serve "$WORK/own"; then
		ok 1 "own cases: DNS server starts"
		return
	fi
	own_addresses
	own_null_sender
	own_helos
	own_limits
	own_dns_errors
	own_senders
	dns_stop
}

suite_run
own_run
done_testing
