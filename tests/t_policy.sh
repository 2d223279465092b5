#!/bin/sh
# t_policy.sh: the failure policy. For each kind of failure a check can
# meet (no database, a scan limit, a scan timeout, a message over the size
# limit, a MIME limit, a header limit, too many recipients), the real
# daemon over the milter protocol gives the default action and the one
# configured: the reply, the X-Edmilter-Unchecked header on delivered
# mail, the "fallback" log line naming the key. A forged
# X-Edmilter-Unchecked is removed.
. "$(dirname "$0")/lib.sh"

MSG="$WORK/msg"
mkdir -p "$MSG" "$WORK/emptydb"

# send PORT FILE [RCPT...]: one message over tests/milterclient.py. Prints
# "rcpt N LETTER TEXT" for each recipient, "body LETTER" (s: the filter
# skipped the rest), "final LETTER TEXT" and "mod LETTER NAME=VALUE" for
# each change (a deletion has an empty VALUE).
send() {
	/usr/bin/python3 - "$SRCDIR/tests" "$@" <<'PY'
import os, struct, sys
sys.path.insert(0, sys.argv[1])
import milterclient

port, path, rcpts = int(sys.argv[2]), sys.argv[3], sys.argv[4:]
raw = open(path, "rb").read().replace(b"\r\n", b"\n")
head, _, body = raw.partition(b"\n\n")
hdrs = []
for line in head.split(b"\n"):
    if line[:1] in (b" ", b"\t") and hdrs:
        hdrs[-1][1] += b"\n" + line
    elif b":" in line:
        n, v = line.split(b":", 1)
        hdrs.append([n, v.lstrip(b" ")])
c = milterclient.Conn(port, actions=int(os.environ.get("ACTIONS", "0x1ff"), 16))
c.connect("client.example.org", "192.0.2.7")
c.helo("client.example.org")
c.macro("M", i="POLICY")
c.mail("sender@example.com")


def reply(letter):
    """The letter and, for a reply code, its text."""
    if letter in ("-",):
        return "-"
    return letter


for i, r in enumerate(rcpts or ["rcpt@example.net"], 1):
    if c.proto & milterclient.NR["R"]:
        c._send(b"R", b"<" + r.encode() + b">\0")
        print("rcpt %d -" % i)
        continue
    c._send(b"R", b"<" + r.encode() + b">\0")
    cmd, data = c._read()
    print("rcpt %d %s %s" % (i, cmd.decode(),
                             data.rstrip(b"\0").decode(errors="replace")))
for n, v in hdrs:
    c.header(n.decode(), v.decode(errors="replace"))
c._step("N", b"")
print("body %s" % c.body(body.replace(b"\n", b"\r\n")))
final, data, mods = c.eom()
print("final %s %s" % (final, data.rstrip(b"\0").decode(errors="replace")))
for letter, d in mods:
    if letter in ("h", "i", "m"):
        if letter == "h":
            name, value = d.split(b"\0")[:2]
        else:
            name, value = d[4:].split(b"\0")[:2]
        print("mod %s %s=%s" % (letter, name.decode(),
                                 value.decode(errors="replace").strip()))
    else:
        print("mod %s %s" % (letter, d.rstrip(b"\0").decode()))
c.close()
PY
}

# up NAME ["Key Value"...]: a daemon with these config lines (each
# replaces the line of its key). libmilter notices SIGTERM only after up to
# 5 s: the previous daemon stops in the background, reaped at the end.
RETIRED=""
up() {
	if [ -n "${MILTER_PID:-}" ]; then
		kill -TERM "$MILTER_PID" 2>/dev/null
		RETIRED="$RETIRED $MILTER_PID"
		MILTER_PID=""
	fi
	name=$1
	shift
	write_conf "$WORK/$name.conf"
	for l in "$@"; do
		grep -v "^${l%% *} " "$WORK/$name.conf" >"$WORK/$name.new"
		echo "$l" >>"$WORK/$name.new"
		mv "$WORK/$name.new" "$WORK/$name.conf"
	done
	mv "$WORK/milter.log" "$WORK/milter.log.$name" 2>/dev/null
	start_milter "$WORK/$name.conf"
	ok $? "daemon $name starts ($*)"
}
reap() {
	for p in $RETIRED; do
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$p" 2>/dev/null
	done
	RETIRED=""
}
CLEANUP="$CLEANUP reap"

# field OUT KEY: the rest of the first line of OUT starting with KEY.
field() {
	printf '%s\n' "$1" | sed -n "s/^$2 //p" | head -1
}

msg_head() {
	printf 'From: Sender <sender@example.com>\nTo: rcpt@example.net\n'
	printf 'Subject: %s\nMessage-ID: <%s@example.com>\n' "$1" "$1"
}

# A Content-Type with thousands of empty parameters: libclamav gives up on
# it (Heuristics.Limits.Exceeded.EmailMIMEArguments), as on a real spam.
{
	msg_head limit
	printf 'Content-Type: text/html '
	i=0
	while [ $i -lt 7000 ]; do printf '; '; i=$((i + 1)); done
	printf '\n\n<p>hello</p>\n'
} >"$MSG/limit.eml"
{
	msg_head clean
	printf 'X-Edmilter-Unchecked: clamav/no-engine: forged\n\n'
	printf 'Nothing to see.\n'
} >"$MSG/clean.eml"
{
	msg_head big
	printf '\n'
	eicar
	printf '\n'
	i=0
	while [ $i -lt 200 ]; do
		echo "filler line $i of a message over the size limit"
		i=$((i + 1))
	done
} >"$MSG/big-eicar.eml"
{
	msg_head big
	printf '\n'
	i=0
	while [ $i -lt 200 ]; do
		echo "filler line $i of a message over the size limit"
		i=$((i + 1))
	done
} >"$MSG/big.eml"
{
	msg_head headers
	i=0
	while [ $i -lt 30 ]; do echo "X-Many-$i: header $i"; i=$((i + 1)); done
	printf '\nbody\n'
} >"$MSG/headers.eml"
{
	msg_head longheader
	printf 'X-Long: '
	i=0
	while [ $i -lt 300 ]; do printf 'word%03d ' $i; i=$((i + 1)); done
	printf '\n\nbody\n'
} >"$MSG/longheader.eml"
{
	msg_head parts
	printf 'MIME-Version: 1.0\n'
	printf 'Content-Type: multipart/mixed; boundary="b"\n\n'
	for i in 1 2 3 4 5; do
		printf -- '--b\nContent-Type: text/plain\n\npart %s\n' $i
	done
	printf -- '--b--\n'
} >"$MSG/parts.eml"

# --- A scan limit of libclamav. ---
up limit
out=$(send "$MILTER_PORT" "$MSG/limit.eml")
is "$(field "$out" final)" \
	"y 550 5.7.0 message too complex to be checked for viruses" \
	"scan limit, default: rejected (OnScanLimit reject)"
like "$(cat "$WORK/milter.log")" 'POLICY: fallback: clamav/scan-limit: scan limit exceeded \(Heuristics\.Limits\.Exceeded\.EmailMIMEArguments\): reject by OnScanLimit \(default\)' \
	"scan limit: the fallback is logged with its action and key"
like "$(cat "$WORK/milter.log")" 'POLICY: client=.* clamav=error .* fallback=clamav/scan-limit:reject verdict=reject ' \
	"scan limit: the message's line names the fallback"

up limit-accept "OnScanLimit accept"
out=$(send "$MILTER_PORT" "$MSG/limit.eml")
is "$(field "$out" final)" "c " "OnScanLimit accept: delivered"
like "$out" 'mod h X-Edmilter-Unchecked=clamav/scan-limit: scan limit exceeded \(Heuristics\.Limits\.Exceeded\.EmailMIMEArguments\)' \
	"OnScanLimit accept: X-Edmilter-Unchecked says what was not checked"
like "$out" 'mod h X-Virus-Status=Unchecked \(scan limit exceeded' \
	"OnScanLimit accept: X-Virus-Status says Unchecked"
like "$(cat "$WORK/milter.log")" "fallback: clamav/scan-limit: .*: accept by OnScanLimit \\($WORK/limit-accept.conf:[0-9]+\\)" \
	"OnScanLimit accept: logged with the line that chose it"

up limit-hold "OnScanLimit quarantine"
out=$(send "$MILTER_PORT" "$MSG/limit.eml")
like "$out" 'mod q clamav/scan-limit' "OnScanLimit quarantine: held"
is "$(field "$out" final)" "c " "OnScanLimit quarantine: taken into the hold queue"

# A virus behind the limit is still found: the limit does not hide it.
{
	msg_head limit-eicar
	printf 'Content-Type: text/plain '
	i=0
	while [ $i -lt 7000 ]; do printf '; '; i=$((i + 1)); done
	printf '\n\n'
	eicar
	printf '\n'
} >"$MSG/limit-eicar.eml"
out=$(send "$MILTER_PORT" "$MSG/limit-eicar.eml")
like "$(field "$out" final)" '^y 550 5\.7\.0 message refused: virus found: Edmilter\.Test\.Eicar' \
	"OnScanLimit quarantine: a virus past the limit is rejected as one"

# Mail that was checked says nothing; a forged header goes.
out=$(send "$MILTER_PORT" "$MSG/clean.eml")
like "$out" 'mod m X-Edmilter-Unchecked=$' \
	"a forged X-Edmilter-Unchecked is deleted"
if printf '%s\n' "$out" | grep -q '^mod h X-Edmilter-Unchecked'; then
	ok 1 "a checked message gets no X-Edmilter-Unchecked"
else
	ok 0 "a checked message gets no X-Edmilter-Unchecked"
fi

# --- Unchecked mail the MTA will not let us mark is not delivered. ---
up limit-accept2 "OnScanLimit accept"
out=$(ACTIONS=0x20 send "$MILTER_PORT" "$MSG/limit.eml")
is "$(field "$out" final)" "y 451 4.3.0 temporary local problem, try again later" \
	"no header changes granted: accepted-unchecked mail is tempfailed, not delivered unmarked"

# --- AddHeaders no: ours are not added, forged ones still go. ---
{
	msg_head forged
	printf 'X-Virus-Status: Clean\nX-Virus-Scanned: edmilter on forger\n\n'
	eicar
	printf '\n'
} >"$MSG/forged-eicar.eml"
up noadd-accept "AddHeaders no" "OnInfected accept"
out=$(send "$MILTER_PORT" "$MSG/forged-eicar.eml")
like "$out" 'mod m X-Virus-Status=$' "AddHeaders no: a forged X-Virus-Status is deleted"
like "$out" 'mod m X-Virus-Scanned=$' "AddHeaders no: a forged X-Virus-Scanned is deleted"

# --- The checks that vouch for them off: forged ones still go. ---
{
	msg_head forged-auth
	printf 'Authentication-Results: mx.test; spf=pass smtp.mailfrom=a@example.com\n'
	printf 'Authentication-Results: other.example; spf=fail\n'
	printf 'X-Spam-Flag: NO\nX-Spam-Score: -100\nX-Spam-Status: No, score=-100\n\n'
	printf 'hello\n'
} >"$MSG/forged-auth.eml"
up nochecks "AuthChecks no"
out=$(send "$MILTER_PORT" "$MSG/forged-auth.eml")
is "$(field "$out" final)" "c " "AuthChecks no, no rules: clean mail delivered"
like "$out" 'mod m Authentication-Results=$' \
	"AuthChecks no: an Authentication-Results claiming our AuthservID is deleted"
is "$(printf '%s\n' "$out" | grep -c '^mod m Authentication-Results')" 1 \
	"AuthChecks no: another host's Authentication-Results is kept"
for h in X-Spam-Flag X-Spam-Score X-Spam-Status; do
	like "$out" "mod m $h=\$" "no rules: a forged $h is deleted"
done

# --- A scan timeout (ClamAVMaxScanTime at its least, a 15 MB attachment). ---
python3 -c '
import base64, os, sys
sys.stdout.write("From: a@example.com\nTo: b@example.net\nSubject: big\n"
    "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
    "--XX\nContent-Type: application/octet-stream\n"
    "Content-Transfer-Encoding: base64\n\n")
sys.stdout.write(base64.encodebytes(os.urandom(15 << 20)).decode())
sys.stdout.write("--XX--\n")' >"$MSG/slow.eml"
write_conf "$WORK/slow.conf" "ClamAVMaxScanTime 100" "MaxMessageSize 100M"
out=$("$EDMSCAN" -c "$WORK/slow.conf" "$MSG/slow.eml" 2>&1)
like "$out" 'verdict: tempfail \(clamav/scan-timeout: ' \
	"scan timeout: tempfailed (OnScanTimeout default)"
echo "OnScanTimeout reject" >>"$WORK/slow.conf"
out=$("$EDMSCAN" -c "$WORK/slow.conf" "$MSG/slow.eml" 2>&1)
like "$out" 'verdict: reject \(clamav/scan-timeout: ' \
	"scan timeout: OnScanTimeout reject rejects"
rm -f "$MSG/slow.eml"

# --- No database. ---
up nodb-accept "ClamAVDatabase $WORK/emptydb" "OnNoEngine accept"
out=$(send "$MILTER_PORT" "$MSG/clean.eml")
is "$(field "$out" final)" "c " "OnNoEngine accept: delivered"
like "$out" 'mod h X-Edmilter-Unchecked=clamav/no-engine: no virus database loaded$' \
	"OnNoEngine accept: the header says the database is missing"
like "$out" 'mod h X-Virus-Status=Unchecked \(no virus database loaded\)' \
	"OnNoEngine accept: X-Virus-Status without the server's paths"
like "$(cat "$WORK/milter.log")" 'fallback: clamav/no-engine: .*emptydb: no database file in it' \
	"OnNoEngine accept: the log has the folder and why"

# --- Over MaxMessageSize. ---
up size-accept "MaxMessageSize 4K" "OnOversize accept"
out=$(send "$MILTER_PORT" "$MSG/big.eml")
is "$(field "$out" body)" "s" "over the size: the rest of the body is skipped"
is "$(field "$out" final)" "c " "OnOversize accept: delivered"
like "$out" 'mod h X-Edmilter-Unchecked=clamav/oversize: message over MaxMessageSize \(4096 bytes\), only its beginning scanned' \
	"OnOversize accept: the header says only the beginning was scanned"
out=$(send "$MILTER_PORT" "$MSG/big-eicar.eml")
like "$(field "$out" final)" '^y 550 5\.7\.0 message refused: virus found' \
	"OnOversize accept: a virus in the kept part is still rejected"

# --- A message over ClamAVMaxFileSize: libclamav says "virus" with no name
# there; it is the limit it is.
up filesize "ClamAVMaxFileSize 2K"
out=$(send "$MILTER_PORT" "$MSG/big.eml")
is "$(field "$out" final)" \
	"y 550 5.7.0 message too complex to be checked for viruses" \
	"over ClamAVMaxFileSize: OnScanLimit, not a virus named 'unknown'"
like "$(cat "$WORK/milter.log")" 'fallback: clamav/scan-limit: scan limit exceeded \(message of [0-9]+ bytes over ClamAVMaxFileSize\)' \
	"over ClamAVMaxFileSize: logged as the limit"

# --- Header limits. ---
up headers "MaxHeaders 10"
out=$(send "$MILTER_PORT" "$MSG/headers.eml")
is "$(field "$out" final)" "y 550 5.6.0 message header too big" \
	"34 headers over MaxHeaders 10: rejected (OnHeaderLimit default)"
is "$(field "$out" body)" "s" "the header limit: the body is not read"
like "$(cat "$WORK/milter.log")" 'fallback: headers/limit: more than 10 header fields: reject by OnHeaderLimit' \
	"the header limit: logged"
up headers-temp "MaxHeaders 10" "OnHeaderLimit tempfail"
out=$(send "$MILTER_PORT" "$MSG/headers.eml")
is "$(field "$out" final)" \
	"y 451 4.6.0 message header too big, try again later" \
	"OnHeaderLimit tempfail: 451 4.6.0"
up headers-accept "MaxHeaders 10" "OnHeaderLimit accept"
out=$(send "$MILTER_PORT" "$MSG/headers.eml")
is "$(field "$out" final)" "c " "OnHeaderLimit accept: delivered"
like "$out" 'mod h X-Edmilter-Unchecked=headers/limit: more than 10 header fields' \
	"OnHeaderLimit accept: with the header"
up header-size "MaxHeaderSize 1K"
out=$(send "$MILTER_PORT" "$MSG/longheader.eml")
is "$(field "$out" final)" "y 550 5.6.0 message header too big" \
	"a 2.4 KB header over MaxHeaderSize 1K: rejected"
like "$(cat "$WORK/milter.log")" 'fallback: headers/limit: header field X-Long of [0-9]+ bytes, over 1024' \
	"MaxHeaderSize: the header is named in the log"

# --- Recipients. ---
up rcpts "MaxRecipients 2"
out=$(send "$MILTER_PORT" "$MSG/clean.eml" a@example.net b@example.net \
	c@example.net d@example.net)
is "$(field "$out" "rcpt 2")" "c " "MaxRecipients 2: the second is taken"
is "$(field "$out" "rcpt 3")" "y 452 4.5.3 too many recipients, try again later" \
	"the third gets 452 4.5.3 (RFC 5321: sent again in a new transaction)"
is "$(field "$out" "rcpt 4")" "y 452 4.5.3 too many recipients, try again later" \
	"the fourth too"
is "$(field "$out" final)" "c " "the message goes on to the first two"
like "$(cat "$WORK/milter.log")" 'POLICY: client=.* rcpts=2 ' \
	"the message's line counts the two recipients"
like "$(cat "$WORK/milter.log")" 'POLICY: fallback: rcpt/limit: over MaxRecipients 2: <c@example\.net>: tempfail' \
	"each refused recipient is logged with the queue id and its address"
out=$("$EDMSCAN" -c "$WORK/rcpts.conf" --rcpt a@example.net \
	--rcpt b@example.net --rcpt c@example.net "$MSG/clean.eml" 2>&1)
like "$out" 'recipient c@example\.net refused: 452 4\.5\.3 too many recipients' \
	"edmilter-scan refuses the extra recipient as the daemon does"
like "$out" 'verdict: accept' "... and the message goes on to the others"
up rcpts-reject "MaxRecipients 2" "OnRecipientLimit reject"
out=$(send "$MILTER_PORT" "$MSG/clean.eml" a@example.net b@example.net \
	c@example.net)
is "$(field "$out" "rcpt 3")" "y 550 5.5.3 too many recipients" \
	"OnRecipientLimit reject: 550 5.5.3"
up rcpts-accept "MaxRecipients 2" "OnRecipientLimit accept"
out=$(send "$MILTER_PORT" "$MSG/clean.eml" a@example.net b@example.net \
	c@example.net)
is "$(field "$out" final)" "c " "OnRecipientLimit accept: delivered"
like "$out" 'mod h X-Edmilter-Unchecked=rcpt/limit: 3 recipients, over 2' \
	"OnRecipientLimit accept: with the header"

# --- MIME limits (the rules see the decoded message). ---
up mime "RulesPath $SRCDIR/rules/baseline.rules" "MIMEMaxParts 2"
out=$(send "$MILTER_PORT" "$MSG/parts.eml")
is "$(field "$out" final)" "c " "a MIME limit: delivered (OnMIMELimit accept)"
like "$out" 'mod h X-Edmilter-Unchecked=rules/mime-limit: MIME limit hit: parts' \
	"a MIME limit: the header names the limit"
up mime-reject "RulesPath $SRCDIR/rules/baseline.rules" "MIMEMaxParts 2" \
	"OnMIMELimit reject"
out=$(send "$MILTER_PORT" "$MSG/parts.eml")
is "$(field "$out" final)" \
	"y 550 5.6.0 message structure too complex to be checked" \
	"OnMIMELimit reject: 550 5.6.0"

# --- The keys take only what makes sense. ---
write_conf "$WORK/bad.conf" "OnScanLimit tag" "OnNoEngine discard"
out=$("$EDMILTER" -n -c "$WORK/bad.conf" 2>&1)
like "$out" "bad.conf:[0-9]+: OnScanLimit: bad value \"tag\": expected accept, quarantine, tempfail or reject" \
	"a fallback key refuses tag, with file and line"
like "$out" "OnNoEngine: bad value \"discard\"" \
	"... and discard: unchecked mail is never dropped silently"

stop_milter
done_testing
