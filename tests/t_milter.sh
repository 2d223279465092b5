#!/bin/sh
# t_milter.sh: the real daemon, driven over the milter protocol by Debian's
# miltertest (tests/milter/plan.lua plays the MTA). Verdicts, SMTP replies,
# header changes, quarantine, discard and tag; several messages and aborts
# on one connection; a missing database; the size limit; the one log line
# of each message; and the config check of -n.
. "$(dirname "$0")/lib.sh"

PLAN="$WORK/plan"
FACTS="$WORK/facts"
MSG="$WORK/msg"
EICAR_SIG=Edmilter.Test.Eicar.UNOFFICIAL
CLAM_SIG=Edmilter.Test.ClamExe.UNOFFICIAL
REJECT_EICAR="550 5.7.0 message refused: virus found: $EICAR_SIG"
REJECT_CLAM="550 5.7.0 message refused: virus found: $CLAM_SIG"
UNCHECKED_451="451 4.3.0 message could not be checked for viruses, try again later"
UNCHECKED_550="550 5.7.0 message could not be checked for viruses"
OVERSIZE_550="550 5.3.4 message too big to be checked for viruses"
# clam.exe over the milter in these containers (t_scan.sh tries them all).
CONTAINERS="clam.zip clam.7z clam.cab clam.tar.gz clam.exe.rtf clam.pdf
clam.ole.doc clam.exe.mbox.uu clam-upx.exe clam-petite.exe clam.arj
clam.tnef clam.exe.binhex clam.chm clam.newc.cpio clam_ISmsi_ext.exe"

if ! command -v miltertest >/dev/null 2>&1; then
	skip "miltertest is not installed (Debian package miltertest)"
	done_testing
	exit
fi

# conf_put FILE "Key Value": replaces the line of Key, or adds one.
conf_put() {
	grep -v "^${2%% *} " "$1" >"$1.new"
	echo "$2" >>"$1.new"
	mv "$1.new" "$1"
}

# milter_up NAME ["Key Value"...]: starts a daemon with write_conf's config
# changed by these lines, its log in $WORK/milter.log (the previous daemon's
# moves to $WORK/ITSNAME.log).
milter_up() {
	milter_retire
	MILTER_NAME=$1
	shift
	changes=${*:-defaults}
	write_conf "$WORK/$MILTER_NAME.conf"
	for l in "$@"; do conf_put "$WORK/$MILTER_NAME.conf" "$l"; done
	start_milter "$WORK/$MILTER_NAME.conf"
	ok $? "daemon $MILTER_NAME starts ($changes)"
}

# libmilter notices SIGTERM only after up to 5 s: a daemon no longer needed
# is stopped in the background, and waited for by milter_reap (or the trap).
RETIRED=""
milter_retire() {
	[ -n "${MILTER_PID:-}" ] || return 0
	kill -TERM "$MILTER_PID" 2>/dev/null
	mv "$MILTER_LOG" "$WORK/$MILTER_NAME.log"
	RETIRED="$RETIRED $MILTER_NAME:$MILTER_PID"
	MILTER_PID=""
}

# milter_reap: waits for every retired daemon (KILL after 30 s) and writes
# "NAME:EXITSTATUS" for each to $WORK/reaped. Not in a subshell: only the
# parent shell can wait for its children.
milter_reap() {
	for r in $RETIRED; do
		pid=${r#*:}
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid"
		echo "${r%%:*}:$?" >>"$WORK/reaped"
	done
	RETIRED=""
}
CLEANUP="$CLEANUP milter_reap"

plan_new() { : >"$PLAN"; }
plan_connect() { echo connect >>"$PLAN"; }
# plan_msg FIELD...: one message, fields as tests/milter/plan.lua reads them.
plan_msg() { (IFS=$(printf '\t') && echo "$*") >>"$PLAN"; }

# plan_run WHAT: plays the plan against the daemon; the facts go to $FACTS.
plan_run() {
	timeout 300 miltertest -s "$SRCDIR/tests/milter/plan.lua" \
		-D socket="inet:$MILTER_PORT@127.0.0.1" -D plan="$PLAN" \
		>"$FACTS" 2>&1
	rc=$?
	tail -n 1 "$FACTS" | grep -qx DONE
	if [ $? -eq 0 ] && [ $rc -eq 0 ]; then
		ok 0 "miltertest: $1"
	else
		ok 1 "miltertest: $1 (exit $rc)"
		tail -n 20 "$FACTS" | sed 's/^/#   /'
	fi
}

# fact QID KEY: what plan.lua printed for that message, space-separated.
fact() {
	sed -n "s/^$1 $2=//p" "$FACTS" | tr '\n' ' ' | sed 's/ $//'
}

# log_line QID: the summary line of that message in the daemon's log.
log_line() { grep -E "^[^ ]+ edmilter: $1: " "$MILTER_LOG"; }
# log_field QID KEY: one key=value field of it.
log_field() { log_line "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }

# The size the daemon must count: every line end becomes CRLF on the way.
crlf_size() { echo $(($(wc -c <"$1") + $(wc -l <"$1"))); }

# qid_of FILE: a queue id made of a test file's name.
qid_of() { echo "QC_$1" | tr -c 'A-Za-z0-9_\n' '_'; }

mkdir -p "$MSG" "$WORK/emptydb"
cat >"$MSG/clean.eml" <<'EOM'
From: Sender <sender@example.com>
To: rcpt@example.net
Subject: clean test
Message-ID: <clean.1@example.com>
X-Virus-Scanned: forged by the sender
X-Virus-Status: Clean
X-Virus-Status: Clean
 (folded, and forged too)

Nothing to see here.
Really nothing.
EOM
{
	cat <<'EOM'
From: Sender <sender@example.com>
To: rcpt@example.net
Subject: eicar test
Message-ID: <eicar.1@example.com>

The test string follows.
EOM
	eicar
	echo
} >"$MSG/eicar.eml"
{
	cat <<'EOM'
From: Sender <sender@example.com>
To: rcpt@example.net
Subject: big test
Message-ID: <big.1@example.com>

EOM
	i=0
	while [ $i -lt 3000 ]; do
		echo "line $i of a message bigger than the limit, and clean"
		i=$((i + 1))
	done
} >"$MSG/big.eml"
mail_with_attachment clam.zip "$TESTFILES/clam.zip" >"$MSG/zip.eml" \
	2>/dev/null

# --- Default config: OnInfected reject. ---
milter_up default

plan_new
plan_msg qid=QCLEAN "file=$MSG/clean.eml"
plan_msg qid=QEICAR "file=$MSG/eicar.eml" "reply=$REJECT_EICAR"
found=""
if [ -d "$TESTFILES" ]; then
	for f in $CONTAINERS; do
		[ -f "$TESTFILES/$f" ] || continue
		mail_with_attachment "$f" "$TESTFILES/$f" >"$MSG/$f.eml"
		plan_msg "qid=$(qid_of "$f")" "file=$MSG/$f.eml" \
			"reply=$REJECT_CLAM"
		found="$found $f"
	done
fi
plan_run "a clean message, EICAR and clam.exe in containers"

q=QCLEAN
like "$(fact $q reply)" '^[ca]$' "clean: accepted (continue or accept)"
# The MTA (miltertest) offered HDR_LEADSPC: values keep their space.
is "$(fact $q add.X-Virus-Status)" "[ Clean]" \
	"clean: X-Virus-Status: Clean added"
like "$(fact $q add.X-Virus-Scanned)" '^\[ edmilter [^ ]+ on [^ ]+\]$' \
	"clean: X-Virus-Scanned added, naming the filter and the host"
is "$(fact $q delete.X-Virus-Status)" "1 2" \
	"clean: both incoming X-Virus-Status deleted (chgheader, empty value)"
is "$(fact $q delete.X-Virus-Scanned)" "1" \
	"clean: the incoming X-Virus-Scanned deleted"
is "$(fact $q quarantine) $(fact $q changed.Subject)" "no no" \
	"clean: no quarantine, Subject untouched"
like "$(log_line $q)" '^[0-9-]+T[0-9:.]+ edmilter: QCLEAN: client=192\.0\.2\.7 helo=helo\.example\.org from=<sender@example\.com> rcpts=1 size=[0-9]+ clamav=clean clamav_ms=[0-9]+ verdict=accept reason="clean" ms=[0-9]+$' \
	"clean: one log line, queue id first, then key=value fields"
is "$(log_field $q size)" "$(crlf_size "$MSG/clean.eml")" \
	"clean: size= counts the message as the MTA sent it, CRLF"

q=QEICAR
is "$(fact $q reply) $(fact $q replytext)" "y yes" \
	"EICAR inline: rejected: $REJECT_EICAR"
is "$(fact $q add.X-Virus-Status)$(fact $q quarantine)" "no" \
	"EICAR inline: no header added, no quarantine"
like "$(log_line $q)" "edmilter: QEICAR: client=.* clamav=infected virus=Edmilter\.Test\.Eicar\.UNOFFICIAL clamav_ms=[0-9]+ verdict=reject reason=\"infected: Edmilter\.Test\.Eicar\.UNOFFICIAL\" ms=[0-9]+$" \
	"EICAR inline: logged as infected and rejected, with the signature"

if [ -z "$found" ]; then
	skip "$TESTFILES is absent (Debian package clamav-testfiles)"
fi
for f in $found; do
	q=$(qid_of "$f")
	is "$(fact $q reply) $(fact $q replytext)" "y yes" \
		"clam.exe in $f over the milter: 550 5.7.0 with $CLAM_SIG"
done

# --- Several messages on one connection; abort mid-message. ---
plan_new
plan_connect
plan_msg qid=QM1 "file=$MSG/clean.eml"
plan_msg qid=QM2 "file=$MSG/eicar.eml" "reply=$REJECT_EICAR"
plan_msg qid=QM3 qidat=eom "file=$MSG/clean.eml"
plan_msg qid=QM4 qidat=none "file=$MSG/clean.eml"
plan_run "clean, infected, clean, clean on one connection"

is "$(fact QM1 reply) $(fact QM2 reply) $(fact QM3 reply)" "c y c" \
	"one connection: each message its own reply (continue, reply, continue)"
is "$(fact QM2 replytext)" "yes" "one connection: the infected one: 550 5.7.0"
is "$(log_field QM1 verdict) $(log_field QM2 verdict) $(log_field QM3 verdict)" \
	"accept reject accept" "one connection: logged verdicts"
is "$(fact QM3 add.X-Virus-Status)" "[ Clean]" \
	"one connection: nothing of the infected message sticks to the next"
is "$(log_field QM3 size)" "$(log_field QM1 size)" \
	"one connection: the same message twice, the same size"
like "$(log_line QM3)" 'verdict=accept' \
	"queue id given only at end of message (as Postfix does): logged"
is "$(grep -c 'edmilter: NOQUEUE: client=.* verdict=accept' "$MILTER_LOG")" \
	1 "no queue id: the line starts with NOQUEUE"

plan_new
plan_connect
plan_msg qid=QA1 "file=$MSG/zip.eml" abort=300
plan_msg qid=QA2 "file=$MSG/clean.eml"
plan_connect
plan_msg qid=QA3 "file=$MSG/eicar.eml" abort=999999
plan_msg qid=QA4 "file=$MSG/clean.eml"
plan_run "abort mid-message, then a new message on the same connection"

is "$(fact QA1 aborted) $(fact QA3 aborted)" "yes yes" "both aborts sent"
is "$(fact QA2 reply) $(log_field QA2 verdict)" "c accept" \
	"after an abort mid-body: the next message is accepted"
is "$(log_field QA2 size)" "$(crlf_size "$MSG/clean.eml")" \
	"after an abort: no byte of the aborted message is left over"
is "$(fact QA4 reply) $(log_field QA4 verdict) $(fact QA4 add.X-Virus-Status)" \
	"c accept [ Clean]" "after aborting a whole infected body: next is clean"
is "$(grep -cE 'edmilter: QA[13]: ' "$MILTER_LOG")" 0 \
	"an aborted message gets no verdict line"

# --- OnInfected tempfail, with RejectMessage. ---
milter_up tempfail "OnInfected tempfail" \
	"RejectMessage refused, it carries %v"
plan_new
plan_msg qid=QF1 "file=$MSG/eicar.eml" \
	"reply=451 4.7.0 refused, it carries $EICAR_SIG"
plan_run "OnInfected tempfail"
is "$(fact QF1 reply) $(fact QF1 replytext)" "y yes" \
	"OnInfected tempfail: 451 4.7.0 with RejectMessage, %v expanded"

# --- OnInfected quarantine. ---
milter_up quarantine "OnInfected quarantine"
plan_new
plan_msg qid=QQ1 "file=$MSG/eicar.eml" "quarantine=infected: $EICAR_SIG"
plan_msg qid=QQ2 "file=$MSG/clean.eml"
plan_run "OnInfected quarantine"
is "$(fact QQ1 reply) $(fact QQ1 quarantine) $(fact QQ1 quarantined)" \
	"c yes yes" "quarantine: accepted into quarantine, reason names it"
is "$(fact QQ1 add.X-Virus-Status)" "[ Infected ($EICAR_SIG)]" \
	"quarantine: X-Virus-Status says infected"
like "$(log_line QQ1)" "verdict=quarantine reason=\"infected: $EICAR_SIG\"" \
	"quarantine: logged"
is "$(fact QQ2 reply) $(fact QQ2 quarantine)" "c no" \
	"quarantine config: a clean message is not quarantined"

# --- OnInfected discard. ---
milter_up discard "OnInfected discard"
plan_new
plan_msg qid=QD1 "file=$MSG/eicar.eml"
plan_msg qid=QD2 "file=$MSG/clean.eml"
plan_run "OnInfected discard"
is "$(fact QD1 reply)" "d" "discard: the infected message is discarded"
like "$(log_line QD1)" "clamav=infected .* verdict=discard " \
	"discard: logged"
is "$(fact QD2 reply)" "c" "discard config: a clean message goes on"

# --- OnInfected tag. ---
milter_up tag "OnInfected tag" "TagSubject [INFECTED]"
plan_new
plan_msg qid=QT1 "file=$MSG/eicar.eml" "subject= [INFECTED] eicar test"
plan_msg qid=QT2 "file=$MSG/clean.eml"
plan_run "OnInfected tag"
is "$(fact QT1 reply) $(fact QT1 subject)" "c yes" \
	"tag: accepted, Subject changed to '[INFECTED] eicar test'"
is "$(fact QT1 add.X-Virus-Status)" "[ Infected ($EICAR_SIG)]" \
	"tag: X-Virus-Status says infected"
is "$(fact QT2 reply) $(fact QT2 changed.Subject)" "c no" \
	"tag config: a clean message keeps its Subject"

# --- No database. ---
milter_up nodb "ClamAVDatabase $WORK/emptydb"
plan_new
plan_msg qid=QN1 "file=$MSG/clean.eml" "reply=$UNCHECKED_451"
plan_msg qid=QN2 "file=$MSG/eicar.eml" "reply=$UNCHECKED_451"
plan_msg qid=QN3 "file=$MSG/clean.eml" "reply=$UNCHECKED_451"
plan_connect
plan_msg qid=QN4 "file=$MSG/clean.eml" "reply=$UNCHECKED_451"
plan_run "no database: four messages on two connections"
for q in QN1 QN2 QN3 QN4; do
	is "$(fact $q reply) $(fact $q replytext)" "y yes" \
		"no database: $q: $UNCHECKED_451"
done
like "$(log_line QN1)" 'clamav=error .* fallback=clamav/no-engine:tempfail verdict=tempfail reason="clamav/no-engine: .*emptydb: no database file in it' \
	"no database: the log line says why"
like "$(cat "$MILTER_LOG")" 'QN1: fallback: clamav/no-engine: .*emptydb: no database file in it.*: tempfail by OnNoEngine \(default\)' \
	"no database: the fallback is logged with its action and key"
like "$(cat "$MILTER_LOG")" 'every message gets OnNoEngine \(tempfail\)' \
	"no database: said once at start-up"
kill -0 "$MILTER_PID" 2>/dev/null
ok $? "no database: the daemon stays up"

milter_up scanerr "ClamAVDatabase $WORK/emptydb" "OnNoEngine reject" \
	"OnScanError accept"
plan_new
plan_msg qid=QR1 "file=$MSG/clean.eml" "reply=$UNCHECKED_550"
plan_run "no database, OnNoEngine reject"
is "$(fact QR1 reply) $(fact QR1 replytext)" "y yes" \
	"OnNoEngine reject (OnScanError accept does not apply): $UNCHECKED_550"
like "$(log_line QR1)" 'verdict=reject reason="clamav/no-engine: ' \
	"OnNoEngine reject: logged"

# --- MaxMessageSize. ---
milter_up size "MaxMessageSize 4K"
plan_new
plan_msg qid=QS1 "file=$MSG/big.eml" "reply=$OVERSIZE_550"
plan_msg qid=QS2 "file=$MSG/clean.eml"
plan_run "MaxMessageSize 4K"
is "$(fact QS1 skip)" "yes" "over the size: the filter skips the rest"
is "$(fact QS1 reply) $(fact QS1 replytext)" "y yes" \
	"over the size: reject (OnOversize default): $OVERSIZE_550"
like "$(log_line QS1)" 'fallback=clamav/oversize:reject verdict=reject reason="clamav/oversize: message over MaxMessageSize \(4096 bytes\), only its beginning scanned"' \
	"over the size: logged with the limit"
is "$(fact QS2 reply) $(log_field QS2 verdict)" "c accept" \
	"under the size, same connection: accepted"

# --- Every daemon stops on SIGTERM, cleanly (sanitizer builds: no error). ---
milter_retire
milter_reap
for r in $(cat "$WORK/reaped"); do
	name=${r%%:*}
	is "${r#*:} $(grep -c ' edmilter: stopped$' "$WORK/$name.log")" "0 1" \
		"daemon $name: SIGTERM stops it, exit 0, 'stopped' logged"
done

# --- edmilter -n. ---
write_conf "$WORK/good.conf" "OnInfected quarantine" "MaxMessageSize 10M"
out=$("$EDMILTER" -n -c "$WORK/good.conf" 2>&1)
is "$? $out" "0 configuration OK" "-n, good config: 'configuration OK', exit 0"

bad="$WORK/bad.conf"
cat >"$bad" <<EOF
Socket inet:$(free_port)@127.0.0.1
# a comment, then three bad lines and a good one
NoSuchKey yes
OnInfected explode
MaxMessageSize 12Q
Syslog no
EOF
out=$("$EDMILTER" -n -c "$bad" 2>&1)
rc=$?
is "$rc" 1 "-n, bad config: exit 1"
like "$out" "^$bad:3: unknown key \"NoSuchKey\"\$" "-n: unknown key, file:line"
like "$out" "^$bad:4: OnInfected: bad value \"explode\": expected accept, tag, quarantine, discard, reject or tempfail\$" \
	"-n: bad action, file:line and what is expected"
like "$out" "^$bad:5: MaxMessageSize: bad value \"12Q\": expected a size" \
	"-n: bad size, file:line"
is "$(printf '%s\n' "$out" | wc -l | tr -d ' ')" 3 \
	"-n: one line per error, nothing else"
out=$(timeout 20 "$EDMILTER" -f -c "$bad" 2>&1)
is "$? $(printf '%s\n' "$out" | grep -c "^$bad:")" "1 3" \
	"the daemon refuses the bad config at start, with the same errors"

# What the daemon would meet at start: an empty database folder, a unix
# socket in a folder that is not there.
write_conf "$WORK/start.conf"
conf_put "$WORK/start.conf" "ClamAVDatabase $WORK/emptydb"
conf_put "$WORK/start.conf" "Socket unix:$WORK/nowhere/edmilter.sock"
out=$("$EDMILTER" -n -c "$WORK/start.conf" 2>&1)
like "$out" "start.conf:[0-9]+: ClamAVDatabase: $WORK/emptydb: no database file in it" \
	"-n: an empty database folder, file:line"
like "$out" "start.conf:[0-9]+: Socket: $WORK/nowhere: no such folder for the socket" \
	"-n: the socket's folder missing, file:line"
conf_put "$WORK/start.conf" "ClamAVDatabase $SIGS/edmilter-test.ndb"
out=$("$EDMILTER" -n -c "$WORK/start.conf" 2>&1)
like "$out" "start.conf:[0-9]+: ClamAVDatabase: .*edmilter-test\.ndb: not a folder" \
	"-n: a database file instead of a folder"

done_testing
