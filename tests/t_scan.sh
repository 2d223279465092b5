#!/bin/sh
# t_scan.sh: edmilter-scan, the offline front end. clam.exe found in every
# container of clamav-testfiles; clean mail, and a few messages of the
# SpamAssassin corpus, accepted; the JSON and text reports; the envelope
# options; stdin; exit statuses 0, 1 and 2.
. "$(dirname "$0")/lib.sh"

CONF="$WORK/scan.conf"
MSG="$WORK/msg"
EICAR_SIG=Edmilter.Test.Eicar.UNOFFICIAL
CLAM_SIG=Edmilter.Test.ClamExe.UNOFFICIAL
CORPUS="$SHARED/corpora/spamassassin"

# json_fields KEY... <JSONLINES: per object, the values of these dotted
# keys, space-separated: strings as they are, null as "null", others as
# JSON. A line that is not JSON makes it fail.
json_fields() {
	python3 -c '
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    out = []
    for key in sys.argv[1:]:
        v = d
        for part in key.split("."):
            v = v[part] if isinstance(v, dict) and part in v else "MISSING"
        out.append("null" if v is None else
                   v if isinstance(v, str) else json.dumps(v))
    print(" ".join(out))
' "$@"
}

# json_headers <JSONLINE: the header changes, one "op name index value" a
# line (value "-" for none).
json_headers() {
	python3 -c '
import json, sys
for h in json.loads(sys.stdin.read())["headers"]:
    print(h["op"], h["name"], h["index"],
          "-" if h["value"] is None else h["value"])
'
}

# scan ARGS...: runs edmilter-scan with $CONF; stdout in $OUT, stderr in
# $ERR, exit status in $RC.
OUT="$WORK/out" ERR="$WORK/err"
scan() {
	"$EDMSCAN" -c "$CONF" "$@" >"$OUT" 2>"$ERR"
	RC=$?
}

write_conf "$CONF"
mkdir -p "$MSG" "$WORK/emptydb"
cat >"$MSG/clean.eml" <<'EOM'
From: Sender <sender@example.com>
To: rcpt@example.net
Subject: clean test
Message-ID: <clean.1@example.com>
X-Virus-Status: Clean
X-Virus-Status: Clean
 (folded, and forged too)

Nothing to see here.
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

# --- Every container of clamav-testfiles, one run, one line each. ---
if [ -d "$TESTFILES" ]; then
	files=""
	for f in "$TESTFILES"/*; do
		b=$(basename "$f")
		mail_with_attachment "$b" "$f" >"$MSG/$b.eml"
		files="$files $MSG/$b.eml"
	done
	scan --json $files
	is "$RC" 1 "testfiles: exit 1 (some message would not be accepted)"
	is "$(wc -l <"$OUT" | tr -d ' ')" "$(ls "$TESTFILES" | wc -l | tr -d ' ')" \
		"testfiles: one JSON object per message"
	for f in "$TESTFILES"/*; do
		b=$(basename "$f")
		got=$(grep -F "{\"file\":\"$MSG/$b.eml\"," "$OUT" |
			json_fields verdict clamav.result clamav.signature)
		is "$got" "reject infected $CLAM_SIG" \
			"clam.exe in $b, attached in base64: infected, rejected"
	done
else
	skip "$TESTFILES is absent (Debian package clamav-testfiles)"
fi

# --- A clean message. ---
scan --json "$MSG/clean.eml"
is "$RC" 0 "clean: exit 0"
is "$(json_fields verdict reason reply clamav.result clamav.signature \
	clamav.error <"$OUT")" "accept clean null clean null null" \
	"clean: verdict accept, no reply, clamav clean, no signature"
is "$(json_fields size <"$OUT")" $(($(wc -c <"$MSG/clean.eml") +
	$(wc -l <"$MSG/clean.eml"))) \
	"clean: size counts the message with CRLF, as the daemon does"
json_headers <"$OUT" >"$WORK/hdrs"
is "$(grep ' X-Virus-Status ' "$WORK/hdrs" | tr '\n' '|')" \
	"delete X-Virus-Status 2 -|delete X-Virus-Status 1 -|add X-Virus-Status 0 Clean|" \
	"clean: incoming X-Virus-Status deleted, last first; ours added"
like "$(grep ' X-Virus-Scanned ' "$WORK/hdrs")" \
	'^add X-Virus-Scanned 0 edmilter [^ ]+ on [^ ]+$' \
	"clean: X-Virus-Scanned added"
is "$(cat "$ERR")" "" "clean: nothing on stderr"

# --- EICAR. ---
scan --json "$MSG/eicar.eml"
is "$RC" 1 "EICAR: exit 1"
is "$(json_fields verdict clamav.result clamav.signature <"$OUT")" \
	"reject infected $EICAR_SIG" "EICAR: infected, rejected, signature"
is "$(json_fields reply reason <"$OUT")" \
	"550 5.7.0 message refused: virus found: $EICAR_SIG infected: $EICAR_SIG" \
	"EICAR: the reply and the reason"
is "$(json_fields headers <"$OUT")" "[]" \
	"EICAR: rejected, so no header change listed (the daemon makes none)"

scan "$MSG/eicar.eml"
is "$RC" 1 "text report: exit 1"
like "$(cat "$OUT")" "^  clamav:  infected \\($EICAR_SIG\\), [0-9]+ ms\$" \
	"text report: the ClamAV result and signature"
like "$(cat "$OUT")" "^  verdict: reject \\(infected: $EICAR_SIG\\)\$" \
	"text report: the verdict and why"
like "$(cat "$OUT")" "^  reply:   550 5.7.0 message refused: virus found: $EICAR_SIG\$" \
	"text report: the reply"

# --- Several files: the worst status wins. ---
scan --json "$MSG/clean.eml" "$MSG/eicar.eml" "$MSG/clean.eml"
is "$RC $(json_fields verdict <"$OUT" | tr '\n' ' ')" \
	"1 accept reject accept " "clean, infected, clean: each its own verdict, exit 1"

# --- stdin. ---
scan --json <"$MSG/clean.eml"
is "$RC $(json_fields file verdict <"$OUT")" "0 - accept" \
	"stdin (no file): read, accepted, exit 0"
scan --json - <"$MSG/eicar.eml"
is "$RC $(json_fields file verdict clamav.signature <"$OUT")" \
	"1 - reject $EICAR_SIG" "stdin (\"-\"): infected, exit 1"

# --- Envelope options, in the log line of -v. ---
scan -v --ip 192.0.2.9 --helo mx.example.org --from '<a@example.org>' \
	--rcpt b@example.net --rcpt '<c@example.net>' --auth alice \
	"$MSG/clean.eml"
like "$(cat "$ERR")" ' scan: client=192\.0\.2\.9 helo=mx\.example\.org from=<a@example\.org> rcpts=2 size=[0-9]+ clamav=clean clamav_ms=[0-9]+ verdict=accept reason="clean" ms=[0-9]+$' \
	"-v: the log line carries --ip, --helo, --from and the --rcpt count"

# --- Errors: exit 2. ---
scan --json "$WORK/no-such.eml"
is "$RC" 2 "a missing file: exit 2"
like "$(cat "$ERR")" "^edmilter-scan: $WORK/no-such\\.eml: No such file or directory\$" \
	"a missing file: named on stderr, with the reason"
is "$(cat "$OUT")" "" "a missing file: no report"
scan --json "$MSG"
is "$RC" 2 "a directory: exit 2"
if [ "$(id -u)" -ne 0 ]; then
	cp "$MSG/clean.eml" "$WORK/unreadable.eml"
	chmod 000 "$WORK/unreadable.eml"
	scan --json "$WORK/unreadable.eml"
	is "$RC" 2 "a file without read permission: exit 2"
else
	skip "running as root: a file of mode 000 is still readable"
fi
scan --json "$MSG/clean.eml" "$WORK/no-such.eml" "$MSG/eicar.eml"
is "$RC $(json_fields verdict <"$OUT" | tr '\n' ' ')" "2 accept reject " \
	"an unreadable file among others: the others reported, exit 2"

conf_nodb="$WORK/nodb.conf"
sed "s|^ClamAVDatabase .*|ClamAVDatabase $WORK/emptydb|" "$CONF" >"$conf_nodb"
"$EDMSCAN" -c "$conf_nodb" --json "$MSG/clean.eml" >"$OUT" 2>"$ERR"
is "$? $(json_fields verdict clamav.result <"$OUT")" "1 tempfail error" \
	"no database: tempfail, never accepted unscanned, exit 1"
is "$(json_fields reply <"$OUT")" \
	"451 4.3.0 message could not be checked for viruses, try again later" \
	"no database: the 451 reply"
like "$(cat "$ERR")" "$WORK/emptydb: no database file in it" \
	"no database: said on stderr"

printf 'Socket inet:1@127.0.0.1\nNoSuchKey 1\n' >"$WORK/bad.conf"
"$EDMSCAN" -c "$WORK/bad.conf" --json "$MSG/clean.eml" >"$OUT" 2>"$ERR"
is "$? $(cat "$ERR")" "2 $WORK/bad.conf:2: unknown key \"NoSuchKey\"" \
	"a bad config: file:line on stderr, exit 2"

# --- Bytes that are not UTF-8 still make valid JSON (as U+FFFD). ---
{
	printf 'From: a@example.com\nTo: b@example.net\nSubject: caf\351\n'
	printf 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n'
	printf -- '--b\nContent-Type: application/octet-stream\n'
	printf "Content-Disposition: attachment; filename*=utf-8''%%FF%%FE%%C3%%A9\n\n"
	printf 'hello\n--b--\n'
} >"$MSG/latin.eml"
write_conf "$WORK/u8.conf" "RulesPath $SRCDIR/rules/baseline.rules"
"$EDMSCAN" -c "$WORK/u8.conf" --json "$MSG/latin.eml" >"$OUT" 2>"$ERR"
is "$(python3 -c '
import json, sys
d = json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))
print(ascii(d["mime"]["parts"][0]["name"]))' "$OUT" 2>&1)" "'\ufffd\ufffd\xe9'" \
	"--json: a name with bytes that are not UTF-8 is valid JSON, U+FFFD for each"

"$EDMSCAN" -c "$CONF" --ip 999.1.1.1 "$MSG/clean.eml" >"$OUT" 2>"$ERR"
is "$? $(cat "$ERR")" \
	"2 edmilter-scan: --ip 999.1.1.1: not an IPv4 or IPv6 address" \
	"--ip that is no address: said, exit 2"

# --- A scan limit is never learnt as clean. ---
# EICAR 20 multiparts deep, past ClamAVMaxRecursion (17): each copy, and
# the same parts in a message that differs (a Received line more), meets
# the limit, whether OnScanLimit rejects (no second scan) or delivers (a
# second scan past the limit, which must not teach libclamav's cache of
# clean files that these bytes are clean).
nested() {
	printf 'From: Sender <sender@example.com>\nTo: rcpt@example.net\n'
	printf 'Subject: nested\nMIME-Version: 1.0\n'
	printf 'Content-Type: multipart/mixed; boundary="q0"\n\n'
	i=1
	while [ $i -lt 20 ]; do
		printf -- '--q%d\nContent-Type: multipart/mixed; boundary="q%d"\n\n' \
			$((i - 1)) $i
		i=$((i + 1))
	done
	printf -- '--q19\nContent-Type: application/octet-stream\n'
	printf 'Content-Transfer-Encoding: base64\n\n'
	eicar | base64
}
nested >"$MSG/nested.eml"
{
	printf 'Received: from elsewhere by mx.example.net; 1 Jan 2026\n'
	cat "$MSG/nested.eml"
} >"$MSG/nested2.eml"
for policy in reject accept; do
	write_conf "$WORK/limit-$policy.conf" "OnScanLimit $policy"
	"$EDMSCAN" -c "$WORK/limit-$policy.conf" --json "$MSG/nested.eml" \
		"$MSG/nested.eml" "$MSG/nested2.eml" "$MSG/nested.eml" \
		>"$OUT" 2>"$ERR"
	is "$(json_fields verdict clamav.result <"$OUT" | tr '\n' ' ')" \
		"$policy error $policy error $policy error $policy error " \
		"OnScanLimit $policy: every copy meets the limit, none is clean"
	is "$(grep -c 'MaxRecursion' "$OUT")" 4 \
		"OnScanLimit $policy: each says which limit"
done

# --- Real mail: a few messages of the SpamAssassin corpus. ---
if [ -d "$CORPUS" ]; then
	files=""
	for d in easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2; do
		for f in $(ls "$CORPUS/$d" | head -n 3); do
			files="$files $CORPUS/$d/$f"
		done
	done
	scan --json $files
	is "$RC" 0 "SpamAssassin corpus sample: exit 0"
	for f in $files; do
		got=$(grep -F "{\"file\":\"$f\"," "$OUT" |
			json_fields verdict clamav.result)
		is "$got" "accept clean" \
			"corpus: $(basename "$(dirname "$f")")/$(basename "$f"): clean, accepted"
	done
else
	skip "$CORPUS is absent: no real-mail test"
fi

done_testing
