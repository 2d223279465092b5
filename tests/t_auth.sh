#!/bin/sh
# t_auth.sh: SPF, DKIM and DMARC together, and the one Authentication-
# Results header, through edmilter-scan (the daemon's own pipeline), with
# the test domains served by a real Knot DNS server on loopback. The
# domains are under example.com/.org/.net so that the organisational
# domain comes from the real public suffix list.
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tests/dns.sh"

PY=/usr/bin/python3
if ! command -v knotd >/dev/null || ! command -v openssl >/dev/null ||
	! "$PY" -c 'import dkim, nacl' 2>/dev/null; then
	echo "1..0 # SKIP knot, openssl or python3-dkim missing"
	exit 0
fi

# A signing key for example.com.
K="$WORK/keys"
mkdir -p "$K"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
	-out "$K/rsa.pem" 2>/dev/null
P=$(openssl pkey -in "$K/rsa.pem" -pubout -outform DER | base64 -w0)

dns_zone example.com <<EOZ
@ TXT "v=spf1 ip4:192.0.2.0/24 -all"
mail A 192.0.2.10
mail TXT "v=spf1 a -all"
_dmarc TXT "v=DMARC1; p=reject; sp=quarantine"
spfbad TXT "v=spf1 ip4:bogus -all"
sel._domainkey TXT $(dns_split_txt "v=DKIM1; k=rsa; p=$P")
EOZ
dns_zone example.org <<EOZ
@ TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc TXT "v=DMARC1; p=quarantine"
EOZ
dns_zone xn--exmple-cua.com <<EOZ
@ TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc TXT "v=DMARC1; p=reject"
EOZ
dns_zone example.net <<EOZ
@ TXT "v=spf1 ip4:198.51.100.0/24 -all"
_dmarc TXT "v=DMARC1; p=none"
EOZ
# No DMARC record, and an SPF record that cannot be evaluated.
dns_zone spfperm-test.com <<EOZ
@ TXT "v=spf1 ip4:192.0.2.0/33 -all"
EOZ
dns_start || { echo "1..0 # SKIP knotd did not start"; exit 0; }

CONF="$WORK/e.conf"
write_conf "$CONF" "Nameservers 127.0.0.1@$DNS_PORT" "DNSTimeout 2000" \
	"InternalHosts 10.0.0.0/8"

msg() { # msg FROM-HEADER [extra header line]
	printf 'From: %s\nTo: bob@example.net\nSubject: test\n' "$1"
	printf 'Date: Thu, 03 Dec 2026 10:00:00 +0000\n'
	printf 'Message-ID: <%s@example.com>\n' "$$"
	[ $# -gt 1 ] && printf '%s\n' "$2"
	printf '\nHello, this is a test.\n'
}
sign() { "$PY" "$SRCDIR/tests/dkim_sign.py" "$K/rsa.pem" sel example.com \
	rsa-sha256 relaxed/relaxed; }

# scan FILE [options]: edmilter-scan --json with the defaults below.
scan() {
	f=$1
	shift
	"$EDMSCAN" -c "$CONF" --json --ip 192.0.2.10 --helo mail.example.com \
		"$@" "$f" 2>>"$WORK/scan.err"
}
# field JSON PATH: one member of the JSON, e.g. dmarc.result.
field() {
	printf '%s' "$1" | "$PY" -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v.get(k)
print("" if v is None else v)' "$2"
}
# the Authentication-Results value the verdict would insert.
ar() {
	printf '%s' "$1" | "$PY" -c '
import json, sys
h = [o for o in json.load(sys.stdin)["headers"]
     if o["name"] == "Authentication-Results" and o["op"] == "insert"]
print(h[0]["value"] if h else "")'
}

# 1. Signed, from an address SPF allows: everything passes.
msg "Alice <alice@example.com>" | sign >"$WORK/good.eml"
j=$(scan "$WORK/good.eml" --from alice@example.com)
is "$(field "$j" spf.result)" pass "signed mail: spf=pass"
is "$(field "$j" dkim.result)" pass "signed mail: dkim=pass"
is "$(field "$j" dmarc.result)" pass "signed mail: dmarc=pass"
is "$(field "$j" verdict)" accept "signed mail: accepted"
h=$(ar "$j")
like "$h" '^mx\.test;' "A-R starts with our authserv-id"
like "$h" 'spf=pass .*smtp\.mailfrom=alice@example\.com smtp\.helo=mail\.example\.com' \
	"A-R spf entry with smtp.mailfrom and smtp.helo"
# header.b is a token, or a quoted string when b= has a '/' (RFC 2045).
like "$h" 'dkim=pass \(2048-bit key\) header\.d=example\.com header\.s=sel header\.a=rsa-sha256 header\.b=([A-Za-z0-9+]{8}|"[A-Za-z0-9+/]{8}")(;|$)' \
	"A-R dkim entry with key size, d, s, a and b"
like "$h" 'dmarc=pass \(p=reject .*header\.from=example\.com policy\.dmarc=reject' \
	"A-R dmarc entry with header.from and policy.dmarc"
is "$(printf '%s' "$j" | grep -o '"name":"Authentication-Results"' | wc -l | tr -d ' ')" 1 \
	"exactly one Authentication-Results"

# 2. A spoof of the p=reject domain from elsewhere.
msg "CEO <ceo@example.com>" >"$WORK/spoof.eml"
j=$(scan "$WORK/spoof.eml" --ip 198.51.100.7 --helo mx.example.net \
	--from billing@example.net)
is "$(field "$j" spf.result)" pass "spoof: its own SPF passes (example.net)"
is "$(field "$j" dmarc.result)" fail "spoof: dmarc=fail"
is "$(field "$j" verdict)" reject "spoof of p=reject: rejected"
like "$(field "$j" reply)" '^550 5\.7\.1 .*DMARC policy of example\.com \(p=reject\)' \
	"the reply names the domain and its policy"

# 3. p=quarantine and p=none.
msg "x@example.org" >"$WORK/q.eml"
j=$(scan "$WORK/q.eml" --ip 198.51.100.7 --from a@example.net)
is "$(field "$j" dmarc.policy)/$(field "$j" verdict)" quarantine/quarantine \
	"p=quarantine: quarantined"
msg "x@example.net" >"$WORK/n.eml"
j=$(scan "$WORK/n.eml" --ip 203.0.113.5 --from a@example.org)
is "$(field "$j" dmarc.result)/$(field "$j" verdict)" fail/accept \
	"p=none: dmarc=fail, accepted"

# 4. The subdomain policy (sp=quarantine) of the organisational domain.
msg "x@shop.example.com" >"$WORK/sub.eml"
j=$(scan "$WORK/sub.eml" --ip 198.51.100.7 --from a@example.net)
is "$(field "$j" dmarc.policy)/$(field "$j" verdict)" quarantine/quarantine \
	"subdomain: sp=quarantine of example.com applies"

# 5. Several From domains: signed for the first, not a pass.
msg "alice@example.com, mallory@example.org" | sign >"$WORK/two.eml"
j=$(scan "$WORK/two.eml" --from alice@example.com)
is "$(field "$j" dmarc.result)" fail "two From domains: dmarc=fail"
like "$(field "$j" dmarc.reason)" 'different From domains' "and says why"
is "$(field "$j" verdict)" reject "under the strictest policy (reject)"
msg "alice@example.com" "From: mallory@example.org" | sign >"$WORK/twoh.eml"
j=$(scan "$WORK/twoh.eml" --from alice@example.com)
is "$(field "$j" dmarc.result)" fail "two From headers: dmarc=fail"
# An address without a usable domain beside the spoofed one is no way
# around the policy: the first address is what mail clients show.
msg "ceo@example.com" "From: x" >"$WORK/badfrom1.eml"
j=$(scan "$WORK/badfrom1.eml" --ip 198.51.100.7 --from a@example.net)
is "$(field "$j" dmarc.result)/$(field "$j" verdict)" fail/reject \
	"a second From without a domain: fail under example.com's reject"
msg "ceo@example.com, x@[192.0.2.1]" >"$WORK/badfrom2.eml"
j=$(scan "$WORK/badfrom2.eml" --ip 198.51.100.7 --from a@example.net)
is "$(field "$j" dmarc.result)/$(field "$j" verdict)" fail/reject \
	"an address literal beside it: fail under example.com's reject"
# From headers a strict parser gives up on still name their domain.
for f in 'CEO <ceo@example.com> (' 'CEO (x <ceo@example.com>' \
	'CEO [ceo@example.com]' 'CEO <ceo@xn--exmple-cua.com>' \
	"=?utf-8?q?CEO?= <ceo@ex$(printf '\303\244')mple.com>"; do
	msg "$f" >"$WORK/evade.eml"
	j=$(scan "$WORK/evade.eml" --ip 198.51.100.7 --from a@example.net)
	is "$(field "$j" dmarc.result)/$(field "$j" verdict)" fail/reject \
		"From: $f: fail under p=reject"
done
# Many From domains: more than are looked up fails under reject.
list=$(i=0; while [ $i -lt 40 ]; do printf 'a@a%d.example.org, ' $i; i=$((i + 1)); done)
msg "${list}ceo@example.com" >"$WORK/many.eml"
j=$(scan "$WORK/many.eml" --ip 198.51.100.7 --from a@example.net)
is "$(field "$j" dmarc.result)/$(field "$j" verdict)" fail/reject \
	"41 From domains: fail, rejected"
# A broken signature of another domain does not turn a spoof into 451.
msg "CEO <ceo@example.com>" \
	"DKIM-Signature: v=1; a=rsa-sha256; d=evil.example.org; s=x..y; h=from; bh=AAAA; b=BBBB" \
	>"$WORK/baddkim.eml"
j=$(scan "$WORK/baddkim.eml" --ip 198.51.100.7 --from a@example.net)
is "$(field "$j" verdict)" reject "unrelated broken DKIM: still rejected"
printf 'To: bob@example.net\nSubject: x\n\nbody\n' >"$WORK/nofrom.eml"
j=$(scan "$WORK/nofrom.eml" --ip 198.51.100.7 --from a@example.net)
is "$(field "$j" dmarc.result)" permerror "no From: permerror, not a pass"
# A permanent error is OnAuthPermError's: accept (the default) says so.
unchecked() {
	printf '%s' "$1" | "$PY" -c '
import json, sys
print(" | ".join(o["value"] for o in json.load(sys.stdin)["headers"]
                 if o["name"] == "X-Edmilter-Unchecked" and o["op"] == "add"))'
}
is "$(field "$j" verdict)" accept "dmarc permerror: accepted (OnAuthPermError)"
like "$(unchecked "$j")" '^auth/dns-perm: dmarc permerror' \
	"dmarc permerror: X-Edmilter-Unchecked says so"
msg "x@spfperm-test.com" >"$WORK/spfperm.eml"
j=$(scan "$WORK/spfperm.eml" --ip 192.0.2.10 --from a@spfperm-test.com)
is "$(field "$j" spf.result)/$(field "$j" dmarc.result)" permerror/none \
	"a broken SPF record, no DMARC: spf=permerror"
is "$(field "$j" verdict)" accept "spf permerror: accepted by default"
is "$(unchecked "$j")" "auth/dns-perm: spf permerror for a@spfperm-test.com" \
	"spf permerror: X-Edmilter-Unchecked names the sender"
cp "$CONF" "$WORK/perm.conf"
echo "OnAuthPermError reject" >>"$WORK/perm.conf"
j=$("$EDMSCAN" -c "$WORK/perm.conf" --json --ip 192.0.2.10 \
	--helo mail.example.com --from a@spfperm-test.com "$WORK/spfperm.eml")
is "$(field "$j" verdict)" reject "OnAuthPermError reject: rejected"
is "$(field "$j" reply)" "550 5.7.1 the sender's domain could not be verified" \
	"OnAuthPermError reject: 550 5.7.1"
# Under a DMARC policy a broken SPF record changes nothing: a spoof fails.
msg "CEO <ceo@example.com>" >"$WORK/spoofperm.eml"
j=$(scan "$WORK/spoofperm.eml" --ip 198.51.100.7 \
	--from a@spfbad.example.com)
is "$(field "$j" spf.result)/$(field "$j" dmarc.result)/$(field "$j" verdict)" \
	permerror/fail/reject "spf permerror under p=reject: still rejected"

# 6. HELO-only SPF pass: the HELO passes, MAIL FROM does not align.
msg "ceo@example.com" >"$WORK/helo.eml"
j=$(scan "$WORK/helo.eml" --ip 192.0.2.10 --helo mail.example.com \
	--from someone@example.net)
is "$(field "$j" spf_helo.result)" pass "HELO identity passes"
is "$(field "$j" dmarc.result)" fail "a HELO-only pass does not align"
is "$(field "$j" verdict)" reject "and the spoof is rejected"
# ... but for the null sender the HELO result is the one that counts.
j=$(scan "$WORK/helo.eml" --ip 192.0.2.10 --helo mail.example.com --from "")
is "$(field "$j" dmarc.result)" pass "null sender: the HELO result aligns"

# 7. A forged Authentication-Results claiming our authserv-id.
msg "ceo@example.com" \
	"Authentication-Results: mx.test; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; dmarc=pass" \
	>"$WORK/forged.eml"
printf 'Authentication-Results: other.example; spf=none\n' >"$WORK/f2"
cat "$WORK/f2" "$WORK/forged.eml" >"$WORK/forged2.eml"
j=$(scan "$WORK/forged2.eml" --ip 198.51.100.7 --from a@example.net)
is "$(field "$j" dmarc.result)/$(field "$j" verdict)" fail/reject \
	"a forged A-R changes nothing"
j=$(scan "$WORK/forged2.eml" --ip 192.0.2.10 --from a@example.com)
ops=$(printf '%s' "$j" | "$PY" -c '
import json, sys
print(" ".join("%s:%s:%s" % (o["op"], o["name"], o["index"])
               for o in json.load(sys.stdin)["headers"]
               if o["name"] == "Authentication-Results"))')
is "$ops" "delete:Authentication-Results:2 insert:Authentication-Results:0" \
	"ours (the 2nd A-R) is deleted, the other server's is kept"

# ... quoted, with quoted-pairs, too.
printf 'Authentication-Results: "mx\\.test"; dmarc=pass\n' >"$WORK/q1"
cat "$WORK/q1" "$WORK/good.eml" >"$WORK/quoted.eml"
j=$(scan "$WORK/quoted.eml" --from alice@example.com)
like "$(printf '%s' "$j" | grep -o '"op":"delete","name":"Authentication-Results","index":1')" \
	'delete' 'a quoted "mx\.test" authserv-id is ours and is deleted'

# ... whatever their number, and however they are folded or commented.
{
	i=0
	while [ $i -lt 150 ]; do
		printf 'Authentication-Results: (forged %d)\n MX.TEST; dmarc=pass\n' $i
		i=$((i + 1))
	done
	cat "$WORK/forged2.eml"
} >"$WORK/forged150.eml"
j=$(scan "$WORK/forged150.eml" --ip 192.0.2.10 --from a@example.com)
n=$(printf '%s' "$j" | "$PY" -c '
import json, sys
ops = [o for o in json.load(sys.stdin)["headers"]
       if o["name"] == "Authentication-Results" and o["op"] == "delete"]
idx = [o["index"] for o in ops]
print(len(ops), idx == sorted(idx, reverse=True), 151 not in idx)')
is "$n" "151 True True" \
	"151 forged A-Rs deleted, highest index first, the other kept"

# 8. Internal hosts and authenticated senders: not enforced, and said so.
j=$(scan "$WORK/spoof.eml" --ip 10.1.2.3 --from a@example.net)
is "$(field "$j" verdict)" accept "internal host: DMARC not enforced"
like "$(ar "$j")" '^mx\.test \(internal host 10\.1\.2\.3: SPF and DMARC not checked\)' \
	"the header says the host is internal"
j=$(scan "$WORK/spoof.eml" --ip 198.51.100.7 --from a@example.net \
	--auth alice)
is "$(field "$j" verdict)" accept "authenticated sender: not enforced"
like "$(ar "$j")" 'auth=pass smtp\.auth=alice' "the header names the user"

# The reply's class follows the configured action, not the check.
CONF4="$WORK/e4.conf"
cp "$CONF" "$CONF4"
echo "OnDMARCReject tempfail" >>"$CONF4"
j=$("$EDMSCAN" -c "$CONF4" --json --ip 198.51.100.7 --helo mx.example.net \
	--from billing@example.net "$WORK/spoof.eml" 2>/dev/null)
is "$(field "$j" verdict)" tempfail "OnDMARCReject tempfail: tempfail"
like "$(field "$j" reply)" '^451 4\.7\.1 ' "with a 451 4.7.1 reply, not a 550"

# 9. Received-SPF on request, replacing one claiming to be ours.
CONF2="$WORK/e2.conf"
cp "$CONF" "$CONF2"
echo "AddReceivedSPF yes" >>"$CONF2"
j=$("$EDMSCAN" -c "$CONF2" --json --ip 192.0.2.10 --helo mail.example.com \
	--from alice@example.com "$WORK/good.eml" 2>/dev/null)
ops=$(printf '%s' "$j" | "$PY" -c '
import json, sys
print([o["value"] for o in json.load(sys.stdin)["headers"]
       if o["name"] == "Received-SPF"][0])')
like "$ops" '^pass .*client-ip=192\.0\.2\.10' "Received-SPF: pass with client-ip"

# 11. A domain that is no DNS name (a label of 64 octets) can have no
# record, now or later: no temporary error, which the sender would retry
# until it bounces.
long=$(printf "x%.0s" $(seq 64)).test
msg "a@$long" >"$WORK/longlabel.eml"
j=$(scan "$WORK/longlabel.eml" --ip 198.51.100.7 --from "a@$long")
is "$(field "$j" spf.result)/$(field "$j" dmarc.result)/$(field "$j" verdict)" \
	none/none/accept "a 64-octet label: spf=none, dmarc=none, accepted"
j=$(scan "$WORK/longlabel.eml" --ip 198.51.100.7 --from a@example.net)
is "$(field "$j" dmarc.result)/$(field "$j" verdict)" none/accept \
	"a 64-octet label in From alone: dmarc=none, accepted"
# A trailing dot on the sender's domain is no malformed name (RFC 7208
# 4.3): checked as the domain without it.
msg "a@example.com" >"$WORK/dot.eml"
j=$(scan "$WORK/dot.eml" --ip 192.0.2.10 --from a@example.com.)
is "$(field "$j" spf.result)/$(field "$j" dmarc.result)" pass/pass \
	"MAIL FROM a@example.com. (a trailing dot): spf=pass as example.com"
j=$(scan "$WORK/dot.eml" --ip 198.51.100.7 --from a@example.com.)
is "$(field "$j" spf.result)" fail "... and fail from elsewhere"

# An SMTPUTF8 sender domain is looked up as its A-labels (RFC 8616).
u="a@ex$(printf '\303\244')mple.com"
msg "$u" >"$WORK/idn.eml"
j=$(scan "$WORK/idn.eml" --ip 192.0.2.10 --from "$u")
is "$(field "$j" spf.result)/$(field "$j" spf.domain)/$(field "$j" dmarc.result)" \
	pass/xn--exmple-cua.com/pass \
	"MAIL FROM with a U-label domain: SPF of its A-label, pass; DMARC aligned"
j=$(scan "$WORK/idn.eml" --ip 198.51.100.7 --from "$u")
is "$(field "$j" spf.result)/$(field "$j" verdict)" fail/reject \
	"... and from elsewhere: fail, rejected under p=reject"

# A DKIM signature whose key name is no DNS name (s=a..b, a 64-octet
# selector, d= with an empty label) has no key: a spoof of a p=reject
# domain carrying one is still refused, not tempfailed.
for sd in 's=a..b; d=example.com' "s=x$(printf 'x%.0s' $(seq 63)); d=example.com" \
	's=sel; d=foo..example.com'; do
	{
		printf 'DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; %s;\n' "$sd"
		printf ' h=from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\n'
		msg "a@example.com"
	} >"$WORK/badkey.eml"
	j=$(scan "$WORK/badkey.eml" --ip 198.51.100.7 --from a@example.com)
	is "$(field "$j" dmarc.result)/$(field "$j" verdict)" fail/reject \
		"DKIM key name that is no DNS name ($sd): dmarc=fail, rejected"
done
msg "a@x$long.example.org" >"$WORK/longlabel2.eml"
j=$(scan "$WORK/longlabel2.eml" --ip 198.51.100.7 --from a@example.net)
is "$(field "$j" dmarc.result)/$(field "$j" verdict)" fail/quarantine \
	"a 64-octet label under example.org: the organisational domain's p=quarantine"

# 10. DNS down: a temporary failure, neither a pass nor a reject.
BH=$("$PY" -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CONF3="$WORK/e3.conf"
write_conf "$CONF3" "Nameservers 127.0.0.1@$BH" "DNSTimeout 300" \
	"InternalHosts 10.0.0.0/8"
j=$("$EDMSCAN" -c "$CONF3" --json --ip 198.51.100.7 --helo mx.example.net \
	--from a@example.net "$WORK/spoof.eml" 2>/dev/null)
is "$(field "$j" dmarc.result)" temperror "DNS down: dmarc=temperror"
is "$(field "$j" verdict)" tempfail "DNS down: tempfail"
like "$(field "$j" reply)" '^451 4\.4\.3 ' "with a 451 4.4.3 reply"

done_testing
