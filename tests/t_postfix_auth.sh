#!/bin/sh
# t_postfix_auth.sh: sender authentication end to end: a private Postfix
# (tests/postfix.sh) hands mail to edmilter, which checks SPF, DKIM and
# DMARC against test domains served by a real Knot DNS server on
# loopback (tests/dns.sh). Postfix's client is 127.0.0.1, which libspf2
# always lets pass SPF (XXX in milter/spf.c), so the spoof below fails
# DMARC on alignment, as a real spoof does.
if ! command -v postfix >/dev/null 2>&1 || ! command -v knotd >/dev/null ||
	! /usr/bin/python3 -c 'import dkim' 2>/dev/null; then
	echo "1..0 # SKIP postfix, knot or python3-dkim is not installed"
	exit 0
fi
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tests/dns.sh"
. "$SRCDIR/tests/postfix.sh"

M="$WORK/msgs"
K="$WORK/keys"
mkdir -p "$M" "$K"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
	-out "$K/rsa.pem" 2>/dev/null
P=$(openssl pkey -in "$K/rsa.pem" -pubout -outform DER | base64 -w0)
dns_zone example.com <<EOZ
@ TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc TXT "v=DMARC1; p=reject"
sel._domainkey TXT $(dns_split_txt "v=DKIM1; k=rsa; p=$P")
EOZ
dns_start || { echo "1..0 # SKIP knotd did not start"; exit 0; }

CLEANUP="pf_show_logs pf_stop"

# 127.0.0.1 is no internal host here: every check runs.
CONF="$WORK/edmilter.conf"
write_conf "$CONF" "Nameservers 127.0.0.1@$DNS_PORT" "DNSTimeout 1000" \
	"InternalHosts 10.255.255.255/32"
PORT=$MILTER_PORT
start_milter "$CONF"
ok $? "edmilter starts"
pf_start "$WORK" "$PORT"
ok $? "postfix starts"

msg() {
	printf 'From: %s\nTo: rcpt@%s\nSubject: auth test\n' "$1" "$PF_DOMAIN"
	printf 'Date: Thu, 03 Dec 2026 10:00:00 +0000\n'
	printf 'Message-ID: <%s.%s@example.com>\n\nHello.\n' "$2" "$$"
}
msg "Alice <alice@example.com>" good |
	/usr/bin/python3 "$SRCDIR/tests/dkim_sign.py" "$K/rsa.pem" sel \
		example.com rsa-sha256 relaxed/relaxed >"$M/good.eml"
msg "CEO <ceo@example.com>" spoof >"$M/spoof.eml"

# Signed mail arrives with three passes in one header of ours.
reply=$(pf_send "$M/good.eml" alice@example.com)
like "$reply" '^250 ' "signed mail: accepted"
qid=$(pf_reply_qid "$reply")
pf_wait_delivered 1
f=$(pf_maildir_file "$qid")
ar=$(sed -n '/^Authentication-Results: mx\.test/,/^[^ \t]/p' "${f:-/dev/null}" |
	sed '$d' | tr -d '\n')
like "$ar" 'spf=pass .*smtp\.mailfrom=alice@example\.com' "delivered: spf=pass"
like "$ar" 'dkim=pass .*header\.d=example\.com' "delivered: dkim=pass"
like "$ar" 'dmarc=pass .*header\.from=example\.com' "delivered: dmarc=pass"
is "$(grep -c '^Authentication-Results:' "${f:-/dev/null}")" 1 \
	"exactly one Authentication-Results"
is "$(head -1 "${f:-/dev/null}" | cut -d: -f1)" Return-Path \
	"delivered file starts as local delivery writes it"
like "$(grep -E "edmilter: $qid: " "$WORK/milter.log")" \
	"spf=pass dkim=pass dmarc=pass dmarc_domain=example\.com" \
	"the log line carries the three results"

# A spoof of the p=reject domain is refused, naming the policy.
reply=$(pf_send "$M/spoof.eml" billing@example.org)
like "$reply" '^550 5\.7\.1 .*DMARC policy of example\.com \(p=reject\)' \
	"spoof: 550 5.7.1 naming example.com's p=reject"

# DNS down: tempfail, neither a pass nor a reject. The resolver caches
# what it saw, so this message names domains not looked up before.
msg "CEO <ceo@example.org>" down >"$M/down.eml"
dns_stop
reply=$(pf_send "$M/down.eml" billing@example.net)
like "$reply" '^451 4\.4\.3 ' "DNS down: 451 4.4.3, the sender retries"
is "$(pf_delivered_count)" 1 "DNS down: nothing more delivered"

stop_milter
done_testing
