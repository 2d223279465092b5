#!/bin/sh
# t_rules.sh: the admins' rules in the daemon, end to end through a private
# Postfix (tests/postfix.sh): a rule on the sender or a recipient refuses at
# RCPT time, before any DATA; a scored message arrives tagged with the
# SpamAssassin-style headers; a quarantined one waits in the hold queue;
# an executable attachment is refused at end of DATA. Then a broken rules
# file at reload keeps the running set, edmilter-scan shows which rule
# matched and what text, and a rule of 1000 tests decides in the daemon.
# First, without Postfix: edmilter -n on long chains of and and or, at
# most 1000 tests a rule.
. "$(dirname "$0")/lib.sh"

# Past 1000 tests a rule is an error naming file:line:column, never a
# crash: 400,000 once crashed the daemon at its first message, and
# 1,000,000 edmilter -n itself.
NC="$WORK/n.conf"
rules_n() { # rules_n FILE: what edmilter -n says of it, then its status
	write_conf "$NC" "RulesPath $1"
	"$EDMILTER" -n -c "$NC" 2>&1
	echo "status=$?"
}
chain() { # chain N TEST SEP HEAD TAIL: HEAD, N tests joined by SEP, TAIL
	/usr/bin/python3 - "$@" <<'EOF'
import sys
n, test, sep, head, tail = (a.replace("\\n", "\n") for a in sys.argv[1:])
print(head + sep.join([test] * int(n)) + tail)
EOF
}
chain 400000 'subject =~ /a/' ' and ' 'rule longand { ' ' => reject "x" }' \
	>"$WORK/longand.rules"
out=$(rules_n "$WORK/longand.rules")
like "$out" \
	'^[^ ]*/longand\.rules:1:19016: condition has more than 1000 tests$' \
	"an and of 400,000 tests: an error at the 1001st test"
like "$out" '^status=1$' "edmilter -n fails cleanly on it"
chain 1000000 'subject =~ /a/' ' or\n' 'rule longor {\n' '\n=> reject "x" }' \
	>"$WORK/longor.rules"
out=$(rules_n "$WORK/longor.rules")
like "$out" '/longor\.rules:1002:1: condition has more than 1000 tests' \
	"an or of 1,000,000 tests, one a line: an error naming the line"
like "$out" '^status=1$' "edmilter -n fails cleanly on it"
chain 500 '(subject =~ /^zz/ or subject =~ /longchain/)' ' and ' \
	'rule long { ' ' => reject 550 5.7.1 "long chain" }' >"$WORK/long.rules"
out=$(rules_n "$WORK/long.rules")
is "$out" "configuration OK
status=0" "1000 tests in one rule: configuration OK"

if ! command -v postfix >/dev/null 2>&1; then
	skip "postfix is not installed"
	done_testing
	exit
fi
. "$SRCDIR/tests/postfix.sh"

M="$WORK/msgs"
mkdir -p "$M"
RULES="$WORK/rules"
mkdir -p "$RULES"
cp "$SRCDIR/rules/baseline.rules" "$RULES/10-baseline.rules"
cp "$WORK/long.rules" "$RULES/15-long.rules"
cat >"$RULES/20-local.rules" <<'EOR'
rule block-sender {
    envelope.from =~ /@spammer\.example$/
    => reject 550 5.7.1 "sender refused by local policy (100%% sure)"
}
rule no-such-user {
    envelope.rcpt == "nobody@example.net"
    => reject 550 5.1.1 "no such user here"
}
rule spammy-subject { subject =~ /cheap pills/i => score 6 }
rule hold-me { header "X-Hold" =~ /^yes$/ => quarantine "held by rule" }
EOR

CLEANUP="pf_show_logs pf_stop"

CONF="$WORK/edmilter.conf"
write_conf "$CONF" "RulesPath $RULES"
PORT=$MILTER_PORT
start_milter "$CONF"
ok $? "edmilter starts with the rules"
pf_start "$WORK" "$PORT"
ok $? "postfix starts"

msg() { # msg SUBJECT [extra header]
	printf 'From: Alice <alice@example.com>\nTo: rcpt@%s\n' "$PF_DOMAIN"
	printf 'Subject: %s\nDate: Thu, 03 Dec 2026 10:00:00 +0000\n' "$1"
	printf 'Message-ID: <%s.%s@example.com>\n' "$(echo "$1" | tr -cd a-z)" $$
	[ $# -gt 1 ] && printf '%s\n' "$2"
	printf '\nHello.\n'
}

# Early refusals: the client never gets to DATA.
msg "hello" >"$M/plain.eml"
reply=$(pf_send "$M/plain.eml" boss@spammer.example)
is "$reply" '550 5.7.1 sender refused by local policy (100% sure)' \
	"a rule on the sender refuses before DATA, a %% written as one %"
grep -q "milter-reject: \(MAIL\|RCPT\) from .*: 550 5.7.1 sender refused by local policy" \
	"$PF_LOG"
ok $? "Postfix logged the refusal at MAIL or RCPT, not at DATA"
like "$(grep 'stage=MAIL' "$WORK/milter.log" | tail -1)" \
	'stage=MAIL verdict=reject reason="rule block-sender"' \
	"edmilter logged the stage and the rule"
reply=$(pf_send "$M/plain.eml" alice@example.com \
	"nobody@example.net,rcpt@$PF_DOMAIN")
like "$reply" '^250 ' "one refused recipient, the other takes the mail"
grep -q "milter-reject: RCPT from .*: 550 5.1.1 no such user here; .*to=<nobody@example.net>" \
	"$PF_LOG"
ok $? "the refused recipient got 550 5.1.1 at RCPT"
pf_wait_delivered 1
is "$(pf_delivered_count)" 1 "delivered once, to the other recipient"

# A rule of 1000 tests is evaluated, to its last test, in the daemon.
msg "the longchain" >"$M/long.eml"
reply=$(pf_send "$M/long.eml")
is "$reply" '550 5.7.1 long chain' "a rule of 1000 tests refuses its message"
kill -0 "$MILTER_PID"
ok $? "edmilter is still running"

# A scored message arrives tagged.
msg "Cheap pills today" >"$M/spam.eml"
reply=$(pf_send "$M/spam.eml")
like "$reply" '^250 ' "scored message: accepted"
qid=$(pf_reply_qid "$reply")
pf_wait_delivered 2
f=$(pf_maildir_file "$qid")
is "$(grep '^X-Spam-Flag:' "${f:-/dev/null}")" "X-Spam-Flag: YES" \
	"X-Spam-Flag: YES"
is "$(grep '^X-Spam-Score:' "${f:-/dev/null}")" "X-Spam-Score: 6.0" \
	"X-Spam-Score: 6.0"
is "$(grep '^X-Spam-Status:' "${f:-/dev/null}")" \
	"X-Spam-Status: Yes, score=6.0 required=5.0 tests=spammy-subject" \
	"X-Spam-Status names the rule"
is "$(grep '^Subject:' "${f:-/dev/null}")" "Subject: [SPAM] Cheap pills today" \
	"the Subject is tagged"
like "$(grep "edmilter: $qid: " "$WORK/milter.log")" \
	'score=6\.0 rules=spammy-subject .*verdict=tag' \
	"the log line has the score and the rules"

# Forged spam headers never survive; a clean message says NO.
msg "hello again" "X-Spam-Flag: NO" >"$M/forged.eml"
sed -i 's/^X-Spam-Flag: NO$/X-Spam-Flag: NO\nX-Spam-Status: No, score=-100/' \
	"$M/forged.eml"
reply=$(pf_send "$M/forged.eml")
qid=$(pf_reply_qid "$reply")
pf_wait_delivered 3
f=$(pf_maildir_file "$qid")
is "$(grep -c '^X-Spam-' "${f:-/dev/null}")" 3 "three X-Spam headers, ours"
is "$(grep '^X-Spam-Status:' "${f:-/dev/null}")" \
	"X-Spam-Status: No, score=0.0 required=5.0 tests=none" \
	"the forged X-Spam-Status is gone"

# Quarantine: the hold queue.
msg "please hold" "X-Hold: yes" >"$M/hold.eml"
reply=$(pf_send "$M/hold.eml")
like "$reply" '^250 ' "quarantined message: accepted"
i=0
while [ "$(pf_hold_count)" -lt 1 ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
is "$(pf_hold_count)" 1 "it waits in Postfix's hold queue"

# An executable attachment: refused at end of DATA by the baseline rules.
printf 'MZ not really a program\n' >"$WORK/invoice.exe"
mail_with_attachment invoice.exe "$WORK/invoice.exe" >"$M/exe.eml"
reply=$(pf_send "$M/exe.eml")
like "$reply" '^550 5\.7\.1 executable attachments are refused' \
	"an .exe attachment is refused"

# A broken rules file at reload: the running set stays, the log says why.
printf 'rule broken { subjectx =~ /x/ => reject "no" }\n' \
	>"$RULES/30-broken.rules"
kill -USR1 "$MILTER_PID"
i=0
while ! grep -q 'reload failed' "$WORK/milter.log" && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
like "$(grep '30-broken.rules' "$WORK/milter.log")" \
	'30-broken\.rules:1:15: unknown target "subjectx"' \
	"the log names file, line and column"
ok "$(grep -c 'reload failed: keeping the running configuration' \
	"$WORK/milter.log" | grep -q '^1$'; echo $?)" \
	"and keeps the running configuration"
reply=$(pf_send "$M/plain.eml" boss@spammer.example)
like "$reply" '^550 5\.7\.1 sender refused' "the running rules still apply"
rm -f "$RULES/30-broken.rules"

# edmilter-scan shows which rules matched and the text they matched.
j=$("$EDMSCAN" -c "$CONF" --json --from alice@example.com "$M/spam.eml" \
	2>/dev/null)
is "$(printf '%s' "$j" | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)["rules"]
print(r["score"], [(h["name"], h["matched"]) for h in r["hits"]])')" \
	"6.0 [('spammy-subject', 'Cheap pills')]" \
	"edmilter-scan: the rule and its matched text"
"$EDMSCAN" -c "$CONF" --from boss@spammer.example "$M/plain.eml" \
	>"$WORK/scan.txt" 2>/dev/null
like "$(cat "$WORK/scan.txt")" 'decided by block-sender at MAIL' \
	"edmilter-scan: the deciding rule and its stage"

stop_milter
done_testing
