#!/bin/sh
# t_regress.sh: inputs that once got through, kept as tests. Each was a
# kind of fault; the fix covers the kind, the input stands for it.
. "$(dirname "$0")/lib.sh"

[ -d "$TESTFILES" ] || {
	echo "1..0 # SKIP clamav-testfiles is not installed"
	exit 0
}
CONF="$WORK/e.conf"
write_conf "$CONF"
verdict() { # verdict FILE: "verdict clamav-result"
	"$EDMSCAN" -c "$CONF" --json "$1" 2>/dev/null | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["verdict"], d["clamav"]["result"])'
}

# 1. A body line starting with "From " once split the scanned copy (an
# mbox line was put in front) and hid the attachment after it.
{
	printf 'From: a@example.net\nSubject: t\nMIME-Version: 1.0\n'
	printf 'Content-Type: multipart/mixed; boundary="B"\n\n--B\n'
	printf 'Content-Type: text/plain\n\nhello\n\n'
	printf 'From someone@example.net Thu Jan  1 00:00:00 1970\n\n--B\n'
	printf 'Content-Type: application/zip; name="c.zip"\n'
	printf 'Content-Transfer-Encoding: base64\n\n'
	base64 "$TESTFILES/clam.zip"
	printf -- '--B--\n'
} >"$WORK/split.eml"
is "$(verdict "$WORK/split.eml")" "reject infected" \
	"a \"From \" body line does not hide what follows"

# 2. A plain uuencoded message whose first header is unusual.
{
	printf 'X-Odd-First: yes\nSubject: uu\n\n'
	/usr/bin/python3 -c '
import binascii, sys
d = open(sys.argv[1], "rb").read()
print("begin 644 clam.exe")
for i in range(0, len(d), 45):
    sys.stdout.write(binascii.b2a_uu(d[i:i + 45]).decode())
print("`\nend")' "$TESTFILES/clam.exe"
} >"$WORK/uu.eml"
is "$(verdict "$WORK/uu.eml")" "reject infected" \
	"uuencode after an unusual first header is mail to libclamav"

# 3. libclamav reports "clean" when it cannot write its temporary files:
# with the private folder gone it is made again; on a full disk the
# message is not scanned and so tempfailed.
mail_with_attachment clam.zip "$TESTFILES/clam.zip" >"$WORK/zip.eml"
if mkdir -p "$WORK/small" &&
	mount -t tmpfs -o size=2m tmpfs "$WORK/small" 2>/dev/null; then
	CLEANUP="$CLEANUP unmount_small"
	unmount_small() { umount "$WORK/small" 2>/dev/null; }
	write_conf "$WORK/small.conf"
	sed -i "s|^TemporaryDirectory .*|TemporaryDirectory $WORK/small|" \
		"$WORK/small.conf"
	head -c 1500000 /dev/zero >"$WORK/small/filler" 2>/dev/null
	j=$("$EDMSCAN" -c "$WORK/small.conf" --json "$WORK/zip.eml" \
		2>/dev/null)
	like "$j" '"verdict":"tempfail".*"result":"error","signature":null,"error":"temporary directory [^"]*: less than [0-9]+ bytes free"' \
		"a full temporary directory: not scanned, tempfailed"
	umount "$WORK/small"
else
	skip "cannot mount a small tmpfs here (not root?)"
fi

write_conf "$CONF"
start_milter "$CONF"
ok $? "edmilter starts"
TMPD=$(ls -d "$WORK"/edmilter-clamav.* 2>/dev/null | head -1)
rm -rf "$TMPD"
printf 'qid=Q1\tfile=%s\treply=550 5.7.0 message refused: virus found: Edmilter.Test.ClamExe.UNOFFICIAL\n' \
	"$WORK/zip.eml" >"$WORK/plan"
timeout 60 miltertest -s "$SRCDIR/tests/milter/plan.lua" \
	-D socket="inet:$MILTER_PORT@127.0.0.1" -D plan="$WORK/plan" \
	>"$WORK/facts" 2>&1
is "$(sed -n 's/^Q1 replytext=//p' "$WORK/facts")" yes \
	"the temporary folder removed under the daemon: made again, found"
ok "$([ -d "$TMPD" ] && echo 0 || echo 1)" "the folder is back"
stop_milter

# 4. An empty config at reload is taken for a cut-short file.
write_conf "$CONF" "OnInfected quarantine"
start_milter "$CONF"
: >"$CONF"
kill -USR1 "$MILTER_PID"
i=0
while ! grep -q 'reload failed' "$MILTER_LOG" && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
like "$(grep 'no key set' "$MILTER_LOG")" \
	'no key set: an empty configuration is not taken at reload' \
	"an empty config is not taken at reload"
stop_milter

# 5. Rules files built to break the parser: each is an error naming its
# place, never a crash (one once overflowed the stack, live at reload).
RC="$WORK/rc.conf"
rules_check() { # rules_check FILE: what edmilter -n says of it
	write_conf "$RC" "RulesPath $1"
	"$EDMILTER" -n -c "$RC" 2>&1
}
/usr/bin/python3 -c 'print("rule a { " + "(" * 10000 + "subject =~ /hi/" + ")" * 10000 + " => score 1 }")' \
	>"$WORK/deep.rules"
like "$(rules_check "$WORK/deep.rules")" \
	'deep\.rules:1:[0-9]+: condition nested deeper than 200' \
	"10,000 nested parentheses: an error, not a crash"
/usr/bin/python3 -c 'print("rule a { " + "not " * 100000 + "subject =~ /hi/ => score 1 }")' \
	>"$WORK/nots.rules"
like "$(rules_check "$WORK/nots.rules")" 'nested deeper than 200' \
	"100,000 nots: an error, not a crash"
# The documented bound, exactly: 200 levels taken, 201 refused.
for n in 200 201; do
	/usr/bin/python3 -c 'import sys; n = int(sys.argv[1])
print("rule a { " + "not " * (n // 2) + "(" * (n - n // 2) +
      "subject =~ /hi/" + ")" * (n - n // 2) + " => score 1 }")' $n \
		>"$WORK/n$n.rules"
done
is "$(rules_check "$WORK/n200.rules")" "configuration OK" \
	"200 levels of not and parentheses: taken, as documented"
like "$(rules_check "$WORK/n201.rules")" 'nested deeper than 200' \
	"201 levels: refused"
mkdir -p "$WORK/emptydir"
is "$(rules_check "$WORK/emptydir")" "configuration OK" \
	"a rules folder with no *.rules file: no rules"
printf 'rule a { subject == "h\000i" => score 1 }\n' >"$WORK/nul.rules"
like "$(rules_check "$WORK/nul.rules")" 'nul\.rules:1:[0-9]+: NUL byte in a string' \
	"a NUL byte in a string is an error"
printf 'rule a { size > 18014398509481984K => score 1 }\n' >"$WORK/big.rules"
like "$(rules_check "$WORK/big.rules")" 'big\.rules:1:' \
	"a size past 2^64 is an error, not a wrap"
printf 'rule a { size > 1 => header "X-Virus-Status" "Clean" }\n' \
	>"$WORK/res.rules"
like "$(rules_check "$WORK/res.rules")" 'is not a rule.s to add' \
	"a rule may not add X-Virus-Status"

# 6. "virus == false" has no value when ClamAV could not scan.
printf 'rule v1 { virus == false => score 7 }\n' >"$WORK/v.rules"
write_conf "$RC" "RulesPath $WORK/v.rules" "MaxMessageSize 1K"
eicar >"$WORK/e.com"
mail_with_attachment e.com "$WORK/e.com" >"$WORK/big.eml"
head -c 3000 /dev/zero | tr '\0' x >>"$WORK/big.eml"
j=$("$EDMSCAN" -c "$RC" --json "$WORK/big.eml" 2>/dev/null)
like "$j" '"rules":\{"score":0\.0' "virus == false does not hold unscanned"

# 7. An attachment's other names: every name some client may show is
# tested by the baseline rules, trailing dots dropped as Windows does; a
# third name too, and past 16 names the last one still.
write_conf "$RC" "RulesPath $SRCDIR/rules/baseline.rules"
for disp in 'attachment; filename="a.txt"|name="invoice.exe"' \
	'attachment; filename="a.txt"; filename="invoice.exe"|name="a.txt"' \
	'attachment; filename="invoice.exe."|name="x"' \
	'attachment; filename="a.pdf"; filename="c.exe"|name="b.txt"' \
	'attachment; filename="a.pdf"|name="b.txt"; name="c.exe"' \
	'attachment; filename="a.pdf"; filename="b.txt"; filename="c.exe"|name="a.pdf"' \
	"attachment; $(i=0; while [ $i -lt 30 ]; do printf 'filename="f%d.txt"; ' $i; i=$((i + 1)); done)filename=\"last.exe\"|name=\"f0.txt\""; do
	{
		printf 'From: a@example.org\nSubject: names\nMIME-Version: 1.0\n'
		printf 'Content-Type: multipart/mixed; boundary="B"\n\n--B\n'
		printf 'Content-Type: text/plain\n\nsee attached\n--B\n'
		printf 'Content-Type: application/octet-stream; %s\n' "${disp#*|}"
		printf 'Content-Disposition: %s\n' "${disp%|*}"
		printf 'Content-Transfer-Encoding: base64\n\nTVogbm90IHJlYWxseQ==\n--B--\n'
	} >"$WORK/names.eml"
	j=$("$EDMSCAN" -c "$RC" --json "$WORK/names.eml" 2>/dev/null)
	like "$j" '"verdict":"reject".*"name":"executable-attachment"' \
		"refused: $disp"
done
like "$j" '"mime":\{"limited":true,' "past 16 names: the MIME limit is noted"
like "$(grep 'f0.txt' "$WORK/names.eml" >/dev/null &&
	"$EDMSCAN" -c "$RC" "$WORK/names.eml" 2>&1)" 'mime-limit: .*names' \
	"... and named"

# 8. The queue id comes from the MTA and starts every log line of the
# message: a CR, LF or space in it (a broken or hostile MTA) could forge
# a line; it is made safe like everything else that reaches the log.
write_conf "$WORK/q.conf"
start_milter "$WORK/q.conf"
ok $? "edmilter starts"
/usr/bin/python3 - "$MILTER_PORT" "$SRCDIR/tests" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
import milterclient
c = milterclient.Conn(int(sys.argv[1]))
c.connect("client.example.org", "192.0.2.7")
c.helo("helo.example.org")
c.macro("M", i="Q1\nFORGED: verdict=accept x")
c.mail("a@example.com")
c.rcpt("b@example.net")
c.header("Subject", "qid")
c.body(b"hello\r\n")
c.macro("E", i="Q1\r\nFORGED: verdict=accept x")
c.eom()
c.close()
PY
stop_milter
is "$(grep -c '^FORGED' "$MILTER_LOG")" 0 "a newline in the queue id forges no log line"
like "$(cat "$MILTER_LOG")" 'Q1\?+FORGED:_verdict=accept_x: client=192\.0\.2\.7 ' \
	"the queue id is logged made safe"

done_testing
