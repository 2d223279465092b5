#!/bin/sh
# t_rules_targets.sh: every target, operator and action of the rules
# language, each through edmilter-scan and through the milter protocol to
# the real daemon (miltertest, tests/milter/plan.lua): a rule of one test
# refuses with a text naming the case, so the reply proves the match;
# early targets must be answered at their own SMTP stage.
. "$(dirname "$0")/lib.sh"

M="$WORK/m.eml"
printf 'MZ this is not really a program\n' >"$WORK/att.bin"
cat >"$M" <<EOM
From: "Bank Support" <support@bank.example>
To: rcpt@example.net
Subject: Invoice =?utf-8?q?f=C3=BCr?= you
X-Custom: hello world
Message-ID: <targets.$$@bank.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: multipart/alternative; boundary="b2"

--b2
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

caf=C3=A9 price list
--b2
Content-Type: text/html; charset=utf-8

<p>Click <b>here</b> &amp; pay</p>
--b2--
--b1
Content-Type: application/octet-stream; name="invoice.exe"
Content-Disposition: attachment; filename="invoice.exe"
Content-Transfer-Encoding: base64

$(base64 <"$WORK/att.bin")
--b1--
EOM
eicar >"$WORK/eicar.com"
mail_with_attachment eicar.com "$WORK/eicar.com" >"$WORK/eicar.eml"

# The cases: name | condition | stage it is answered at | envelope
# (ip, name, helo, from, rcpt, auth; "-" for the default) | file | match.
cat >"$WORK/cases" <<'EOC'
ip|client.ip in 192.0.2.0/24, 2001:db8::/32|connect|192.0.2.7 - - - - -|m|yes
ip-no|client.ip in 198.51.100.0/24|connect|192.0.2.7 - - - - -|m|no
name|client.name =~ /^client\.example\.org$/|connect|192.0.2.7 client.example.org - - - -|m|yes
helo|helo == "mx.bad.example"|helo|- - mx.bad.example - - -|m|yes
from|envelope.from =~ /^boss@/|mail|- - - boss@example.org - -|m|yes
auth|auth == "alice"|mail|- - - - - alice|m|yes
macro|macro "{auth_authen}" == "alice"|mail|- - - - - alice|m|yes
rcpt|envelope.rcpt == "x@example.net"|rcpt|- - - - x@example.net -|m|yes
rcpt-no|envelope.rcpt == "x@example.net"|rcpt|- - - - y@example.net -|m|no
header|header "X-Custom" =~ /hello/|eom|- - - - - -|m|yes
header-raw|header.raw "Subject" =~ /=\?utf-8\?q\?/i|eom|- - - - - -|m|yes
subject|subject =~ /Invoice für you/|eom|- - - - - -|m|yes
from-name|from.name == "Bank Support"|eom|- - - - - -|m|yes
from-addr|from.addr == "support@bank.example"|eom|- - - - - -|m|yes
body-qp|body =~ /café price/|eom|- - - - - -|m|yes
body-html|body =~ /Click here & pay/|eom|- - - - - -|m|yes
body-raw|body.raw =~ /caf=C3=A9/|eom|- - - - - -|m|yes
att-name|attachment.name =~ /\.exe$/i|eom|- - - - - -|m|yes
att-type|attachment.type == "application/octet-stream"|eom|- - - - - -|m|yes
att-size|attachment.size >= 30 and attachment.size < 1K|eom|- - - - - -|m|yes
size|size > 500 and size <= 100K|eom|- - - - - -|m|yes
size-no|size < 10|eom|- - - - - -|m|no
virus|virus == true|eom|- - - - - -|eicar|yes
virus-no|virus == true|eom|- - - - - -|m|no
not-ne|subject !~ /zzz/ and from.addr != "x@y.example" and not size < 10|eom|- - - - - -|m|yes
ne-no|from.addr != "support@bank.example"|eom|- - - - - -|m|no
or-paren|(subject =~ /nomatch/ or header "X-Custom" =~ /world/) and size > 1|eom|- - - - - -|m|yes
EOC

CONF="$WORK/e.conf"
printf 'rule none { size < 0 => score 0 }\n' >"$WORK/case.rules"
# The virus case must reach the rules: infected mail is accepted here.
write_conf "$CONF" "RulesPath $WORK/case.rules" "OnInfected accept"
start_milter "$CONF"
ok $? "edmilter starts"

# env FIELD: the n-th word of the envelope, "" for "-".
envf() { w=$(echo "$envl" | cut -d' ' -f"$1"); [ "$w" = - ] || echo "$w"; }

while IFS='|' read -r name cond stage envl file want; do
	[ -n "$name" ] || continue
	printf 'rule %s {\n    %s\n    => reject 550 5.7.1 "hit %s"\n}\n' \
		"$name" "$cond" "$name" >"$WORK/case.rules"
	f="$WORK/$file.eml"
	[ "$file" = m ] && f=$M

	# Through edmilter-scan (the daemon's pipeline).
	set -- --json --ip "$(envf 1)"
	[ -n "$(envf 1)" ] || set -- --json --ip 192.0.2.7
	[ -n "$(envf 2)" ] && set -- "$@" --name "$(envf 2)"
	set -- "$@" --helo "$(envf 3 || true)"
	[ -n "$(envf 3)" ] || set -- "$@" --helo helo.example.org
	set -- "$@" --from "${FROM:-$(envf 4)}"
	[ -n "$(envf 4)" ] || set -- "$@" --from sender@example.com
	set -- "$@" --rcpt "$(envf 5)"
	[ -n "$(envf 5)" ] || set -- "$@" --rcpt rcpt@example.net
	[ -n "$(envf 6)" ] && set -- "$@" --auth "$(envf 6)"
	reply=$("$EDMSCAN" -c "$CONF" "$@" "$f" 2>/dev/null |
		/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["reply"])')
	if [ "$want" = yes ]; then
		is "$reply" "550 5.7.1 hit $name" "scan: $name matches"
	else
		is "$reply" "None" "scan: $name does not match"
	fi

	# Through the milter protocol: a rule is picked up at reload.
	kill -USR1 "$MILTER_PID"
	n=$(grep -c 'reloaded:' "$MILTER_LOG")
	i=0
	while [ "$(grep -c 'reloaded:' "$MILTER_LOG")" -le "$((n - 1))" ] &&
		[ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	sleep 0.3
	line="qid=T$name	file=$f	reply=550 5.7.1 hit $name"
	for kv in "ip:1" "helo:3" "from:4" "rcpt:5" "auth:6"; do
		v=$(envf "${kv#*:}")
		[ -n "$v" ] && line="$line	${kv%:*}=$v"
	done
	[ "$stage" = connect ] || [ "$stage" = helo ] ||
		line="$line	ip=192.0.2.7"
	echo "$line" >"$WORK/plan"
	timeout 60 miltertest -s "$SRCDIR/tests/milter/plan.lua" \
		-D socket="inet:$MILTER_PORT@127.0.0.1" -D plan="$WORK/plan" \
		>"$WORK/facts" 2>&1
	early=$(sed -n "s/^T$name early=//p" "$WORK/facts")
	text=$(sed -n "s/^T$name replytext=//p" "$WORK/facts")
	if [ "$want" = no ]; then
		is "$early/$(sed -n "s/^T$name reply=//p" "$WORK/facts")" "/c" \
			"milter: $name does not match"
	elif [ "$stage" = eom ]; then
		is "$early/$text" "/yes" "milter: $name refused at end of DATA"
	else
		like "$early" "^$stage( 1)?:[ry]$" \
			"milter: $name refused at $stage, before DATA"
	fi
done <"$WORK/cases"

# The actions, through both.
cat >"$WORK/case.rules" <<'EOR'
rule s { subject =~ /Invoice/ => score 6 header "X-Rule" "s was here" tag "[R]" }
rule q { header "X-Custom" =~ /hello/ => quarantine "held for review" }
EOR
j=$("$EDMSCAN" -c "$CONF" --json --ip 192.0.2.7 "$M" 2>/dev/null)
like "$j" '"verdict":"quarantine"' "scan: quarantine"
like "$j" '"name":"X-Rule","index":0,"value":"s was here"' "scan: header action"
like "$j" '"name":"Subject","index":1,"value":"\[R\] Invoice' "scan: tag action"
like "$j" '"name":"X-Spam-Status","index":0,"value":"Yes, score=6.0 required=5.0 tests=s,q"' \
	"scan: X-Spam-Status lists both rules"
kill -USR1 "$MILTER_PID"
sleep 1
printf 'qid=A1\tfile=%s\tip=192.0.2.7\tquarantine=held for review\tsubject= [R] Invoice =?utf-8?q?f=C3=BCr?= you\n' "$M" >"$WORK/plan"
timeout 60 miltertest -s "$SRCDIR/tests/milter/plan.lua" \
	-D socket="inet:$MILTER_PORT@127.0.0.1" -D plan="$WORK/plan" \
	>"$WORK/facts" 2>&1
is "$(sed -n 's/^A1 quarantined=//p' "$WORK/facts")" yes \
	"milter: quarantined with the rule's reason"
is "$(sed -n 's/^A1 add.X-Rule=//p' "$WORK/facts")" "[ s was here]" \
	"milter: the header action"
is "$(sed -n 's/^A1 subject=//p' "$WORK/facts")" yes "milter: the tag action"
for a in 'discard:d' 'tempfail 451 4.7.1 "later":y' 'accept:c'; do
	printf 'rule a { subject =~ /Invoice/ => %s }\nrule z { size > 1 => reject "z" }\n' \
		"${a%:*}" >"$WORK/case.rules"
	kill -USR1 "$MILTER_PID"
	sleep 1
	printf 'qid=B1\tfile=%s\tip=192.0.2.7\treply=451 4.7.1 later\n' \
		"$M" >"$WORK/plan"
	timeout 60 miltertest -s "$SRCDIR/tests/milter/plan.lua" \
		-D socket="inet:$MILTER_PORT@127.0.0.1" -D plan="$WORK/plan" \
		>"$WORK/facts" 2>&1
	is "$(sed -n 's/^B1 reply=//p' "$WORK/facts")" "${a##*:}" \
		"milter: ${a%% *} is decisive (first decisive rule wins)"
	case "$a" in
	tempfail*)
		is "$(sed -n 's/^B1 replytext=//p' "$WORK/facts")" yes \
			"milter: tempfail's own 451 4.7.1 reply"
		;;
	esac
done
stop_milter
done_testing
