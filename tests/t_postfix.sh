#!/bin/sh
# t_postfix.sh: edmilter behind a real Postfix, a private instance on
# loopback (tests/postfix.sh). Checks what the SMTP client is told, what
# lands in the Maildir, what waits in the hold queue, what happens while
# edmilter is down, and that edmilter's log lines carry Postfix's queue id.
# Skipped only when Postfix is not installed.
if ! command -v postfix >/dev/null 2>&1 ||
	! command -v postqueue >/dev/null 2>&1; then
	echo "1..0 # SKIP postfix is not installed"
	exit 0
fi

# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/postfix.sh
. "$SRCDIR/tests/postfix.sh"

CLAM_SIG=Edmilter.Test.ClamExe.UNOFFICIAL
EICAR_SIG=Edmilter.Test.Eicar.UNOFFICIAL
M="$WORK/msgs"
mkdir -p "$M"

# Runs first at exit, while the logs are still there.
# shellcheck disable=SC2034
CLEANUP="pf_show_logs pf_stop"

# milter_conf FILE [LINES...]: a config on the port Postfix was given.
milter_conf() {
	write_conf "$@"
	sed "s/^Socket .*/Socket inet:$PORT@127.0.0.1/" "$1" >"$1.new" &&
		mv "$1.new" "$1"
	MILTER_PORT=$PORT
}

# reload_milter: edmilter rereads its config (SIGUSR1); waits until done.
reload_milter() {
	n=$(grep -c 'edmilter: reloaded: ' "$MILTER_LOG")
	kill -USR1 "$MILTER_PID" || return 1
	i=0
	while [ "$(grep -c 'edmilter: reloaded: ' "$MILTER_LOG")" -le "$n" ]; do
		grep -q 'edmilter: reload failed' "$MILTER_LOG" && return 1
		i=$((i + 1))
		[ $i -ge 100 ] && return 1
		sleep 0.1
	done
}

# edm_line QID: edmilter's summary line of that message.
edm_line() {
	grep -E "edmilter: $1: client=" "$WORK/milter.log" | tail -1
}

# The messages.
cat >"$M/clean.eml" <<EOF
From: Alice <alice@example.com>
To: Bob <rcpt@$PF_DOMAIN>
Subject: clean through postfix
Message-ID: <clean.$$@example.com>

Hello, nothing to see here.
EOF
mail_with_attachment clam.zip "$TESTFILES/clam.zip" >"$M/clamzip.eml"
# shellcheck disable=SC2016
printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-' \
	'ANTIVIRUS-TEST-FILE!$H+H*' >"$WORK/eicar.com"
mail_with_attachment eicar.com "$WORK/eicar.com" >"$M/eicar.eml"
# A forged status header that edmilter must remove, not keep.
{
	echo "X-Virus-Status: Clean"
	cat "$M/clamzip.eml"
} >"$M/forged.eml"

# One config file: the later cases rewrite it and reload edmilter.
CONF="$WORK/edmilter.conf"
write_conf "$CONF"
PORT=$MILTER_PORT
start_milter "$CONF"
ok $? "edmilter starts"
pf_start "$WORK" "$PORT"
rc=$?
ok $rc "postfix starts on 127.0.0.1:$PF_PORT, milter on port $PORT"
if [ $rc -ne 0 ]; then
	done_testing
	exit 1
fi

# (a) Clean mail is delivered, with our headers.
reply=$(pf_send "$M/clean.eml")
like "$reply" '^250 2\.0\.0 Ok: queued as ' "clean: 250 after DATA"
qid=$(pf_reply_qid "$reply")
pf_wait_delivered 1
ok $? "clean: delivered into the Maildir"
f=$(pf_maildir_file "$qid")
ok "$([ -n "$f" ] && echo 0 || echo 1)" "clean: the file of queue id $qid"
is "$(grep -c '^X-Virus-Status: Clean$' "${f:-/dev/null}")" 1 \
	"clean: one X-Virus-Status: Clean"
like "$(grep '^X-Virus-Scanned:' "${f:-/dev/null}")" \
	'^X-Virus-Scanned: edmilter [^ ]+ on ' "clean: X-Virus-Scanned"
like "$(edm_line "$qid")" \
	"edmilter: $qid: client=127\.0\.0\.1 .* verdict=accept " \
	"clean: edmilter's log line starts with the queue id"

# (b) Infected mail is refused at end of DATA, nothing is delivered.
reply=$(pf_send "$M/clamzip.eml")
like "$reply" "^550 5\.7\.0 .*virus found: $CLAM_SIG" \
	"clam.zip: 550 naming the signature"
qid=$(grep -E ": milter-reject: END-OF-MESSAGE .*$CLAM_SIG" "$PF_LOG" |
	tail -1 | sed 's/^.*\]: \([0-9A-F]*\): milter-reject.*/\1/')
like "$qid" '^[0-9A-F]+$' \
	"clam.zip: Postfix logged the refusal at END-OF-MESSAGE"
like "$(edm_line "$qid")" \
	"edmilter: $qid: .*clamav=infected virus=$CLAM_SIG .*verdict=reject " \
	"clam.zip: edmilter's log line starts with the same queue id"
reply=$(pf_send "$M/eicar.eml")
like "$reply" "^550 5\.7\.0 .*virus found: $EICAR_SIG" \
	"eicar: 550 naming the signature"
pf_wait_queue_empty 20
ok $? "queue empty after the refusals"
is "$(pf_queue_count)" 0 "nothing queued for the refused messages"
is "$(pf_delivered_count)" 1 "nothing delivered but the clean message"

# (c) edmilter down: Postfix tempfails, the sender keeps the message.
stop_milter
reply=$(pf_send "$M/clean.eml")
like "$reply" '^451 4\.7\.1 ' "milter down: 451 4.7.1"
grep -q "warning: connect to Milter service inet:127.0.0.1:$PORT: Conn" \
	"$PF_LOG"
ok $? "milter down: Postfix logs why"
pf_wait_queue_empty 20
is "$(pf_queue_count)" 0 "milter down: nothing queued"
is "$(pf_delivered_count)" 1 "milter down: nothing delivered"
start_milter "$CONF"
ok $? "edmilter starts again"
reply=$(pf_send "$M/clean.eml")
like "$reply" '^250 2\.0\.0 Ok: queued as ' \
	"milter back: the same message is accepted"
qid=$(pf_reply_qid "$reply")
pf_wait_delivered 2
ok $? "milter back: delivered"
f=$(pf_maildir_file "$qid")
is "$(grep -c '^X-Virus-Status: Clean$' "${f:-/dev/null}")" 1 \
	"milter back: it was scanned"

# (d) OnInfected quarantine: accepted, but it waits in the hold queue.
milter_conf "$CONF" "OnInfected quarantine"
reload_milter
ok $? "edmilter reloads with OnInfected quarantine"
reply=$(pf_send "$M/clamzip.eml")
like "$reply" '^250 2\.0\.0 Ok: queued as ' "quarantine: 250 after DATA"
qid=$(pf_reply_qid "$reply")
is "$(pf_hold_count)" 1 "quarantine: one message in the hold queue"
ok "$([ -n "$qid" ] && [ -f "$PF_QUEUE/hold/$qid" ] && echo 0 || echo 1)" \
	"quarantine: it is $qid"
is "$(postqueue -c "$PF_CONF" -p | grep -c "^$qid! ")" 1 \
	"quarantine: postqueue -p shows it held"
is "$(pf_queue_count)" 1 "quarantine: the queue counts it"
is "$(postcat -c "$PF_CONF" -h -q "$qid" 2>/dev/null |
	grep '^X-Virus-Status:')" "X-Virus-Status: Infected ($CLAM_SIG)" \
	"quarantine: the held message carries X-Virus-Status: Infected"
grep -qE ": $qid: milter-hold: END-OF-MESSAGE " "$PF_LOG"
ok $? "quarantine: Postfix logs the milter hold"
like "$(edm_line "$qid")" "edmilter: $qid: .*verdict=quarantine " \
	"quarantine: edmilter's log line starts with the queue id"
pf_wait_queue_empty 20
is "$(pf_delivered_count)" 2 "quarantine: nothing delivered"

# (e) OnInfected tag: delivered, Subject tagged, status says infected; a
# forged status header from the sender is gone.
milter_conf "$CONF" "OnInfected tag" "TagSubject [INFECTED]"
reload_milter
ok $? "edmilter reloads with OnInfected tag"
reply=$(pf_send "$M/forged.eml")
like "$reply" '^250 2\.0\.0 Ok: queued as ' "tag: 250 after DATA"
qid=$(pf_reply_qid "$reply")
pf_wait_delivered 3
ok $? "tag: delivered"
f=$(pf_maildir_file "$qid")
is "$(grep '^Subject:' "${f:-/dev/null}")" \
	"Subject: [INFECTED] attachment clam.zip" "tag: Subject tagged"
is "$(grep '^X-Virus-Status:' "${f:-/dev/null}")" \
	"X-Virus-Status: Infected ($CLAM_SIG)" \
	"tag: one X-Virus-Status, Infected, the forged one gone"
like "$(edm_line "$qid")" "edmilter: $qid: .*verdict=tag " \
	"tag: edmilter's log line starts with the queue id"
is "$(pf_hold_count)" 1 "tag: the hold queue holds only the quarantined one"

# The two other actions, while we are here: discard and tempfail.
milter_conf "$CONF" "OnInfected discard"
reload_milter
ok $? "edmilter reloads with OnInfected discard"
reply=$(pf_send "$M/clamzip.eml")
like "$reply" '^250 ' "discard: the client is told 250"
qid=$(pf_reply_qid "$reply")
grep -qE ": $qid: milter-discard: END-OF-MESSAGE " "$PF_LOG"
ok $? "discard: Postfix logs the milter discard"
pf_wait_queue_empty 20
is "$(pf_delivered_count)/$(pf_hold_count)" 3/1 \
	"discard: neither delivered nor held"
milter_conf "$CONF" "OnInfected tempfail"
reload_milter
ok $? "edmilter reloads with OnInfected tempfail"
reply=$(pf_send "$M/clamzip.eml")
like "$reply" "^451 4\.7\.0 .*virus found: $CLAM_SIG" \
	"tempfail: 451 naming the signature"
pf_wait_queue_empty 20
is "$(pf_delivered_count)/$(pf_queue_count)" 3/1 \
	"tempfail: nothing delivered, nothing queued but the held one"

# Every summary line edmilter wrote (8 messages reached it) starts with a
# Postfix queue id, never NOQUEUE.
is "$(grep -c ' verdict=' "$WORK/milter.log")" 8 "eight summary lines"
is "$(grep -cE 'edmilter: [0-9A-F]{6,}: client=.* verdict=' \
	"$WORK/milter.log")" 8 "all eight start with a queue id"

# pf_stop leaves no process of the instance behind.
stop_milter
master=$PF_MASTER
pf_stop
PF_MASTER=$master
is "$(pf_pids)" "" "pf_stop: no Postfix process left"
PF_MASTER=""
done_testing
