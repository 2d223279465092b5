# postfix.sh: a private Postfix instance for the tests and the demo.
# Sourced, never run. Needs root (Postfix's master runs as root) and python3.
#
#   pf_start WORKDIR MILTER_PORT   config, queue, data, Maildir and log all
#                                  under WORKDIR/postfix; smtpd on a free
#                                  port of 127.0.0.1, its milter edmilter
#                                  on inet:MILTER_PORT@127.0.0.1
#   pf_stop                        stops it; no process of it is left
#   pf_send FILE [FROM [TO]]       sends FILE over SMTP; prints the reply
#                                  that ended the transaction: "CODE TEXT"
#   pf_wait_delivered N [SECONDS]  waits for N messages in the Maildir
#   pf_wait_queue_empty [SECONDS]
#   pf_delivered_count, pf_hold_count, pf_queue_count
#   pf_reply_qid REPLY             the queue id in "... queued as QID"
#   pf_maildir_file QID            the delivered file of that queue id
#
# It never touches the system Postfix: its own config_directory (every
# command gets -c), queue_directory, data_directory, syslog_name and
# maillog_file, no chroot, smtpd only on 127.0.0.1, no DNS, and mail for
# anything but the test domain is never sent out (error transport).
#
# After pf_start: PF_DIR, PF_CONF (config_directory), PF_QUEUE, PF_PORT,
# PF_LOG (the maillog file), PF_MAILDIR, PF_DOMAIN.

: "${PF_DOMAIN:=example.net}"
PF_DIR="" PF_MASTER=""
# The user virtual(8) delivers as: never root, never the mail_owner.
PF_UID=$(id -u nobody 2>/dev/null || echo 65534)
PF_GID=$(getent group nogroup 2>/dev/null | cut -d: -f3)
: "${PF_GID:=65534}"

pf_free_port() {
	python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# pf_start WORKDIR MILTER_PORT
pf_start() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "# pf_start: Postfix needs root" >&2
		return 1
	fi
	PF_DIR="$1/postfix"
	PF_CONF="$PF_DIR/etc"
	PF_QUEUE="$PF_DIR/queue"
	PF_LOG="$PF_DIR/maillog"
	PF_MAILDIR="$PF_DIR/mail/Maildir"
	PF_PORT=$(pf_free_port)
	mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF_MAILDIR/new" \
		"$PF_MAILDIR/cur" "$PF_MAILDIR/tmp" || return 1
	# virtual(8) opens the Maildir by absolute path as $PF_UID: it must
	# be able to walk down from WORKDIR (mktemp makes it 0700).
	chmod 711 "$1" "$PF_DIR" || return 1
	chown -R "$PF_UID:$PF_GID" "$PF_DIR/mail" || return 1

	cat >"$PF_CONF/main.cf" <<EOF
# A private test instance: see tests/postfix.sh.
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $PF_DIR/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-edmtest
maillog_file = $PF_LOG
maillog_file_prefixes = $PF_DIR

myhostname = mx.test
mydomain = test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_banner = \$myhostname ESMTP
biff = no
append_dot_mydomain = no

# No DNS at all: the test host may have no resolver.
smtp_dns_support_level = disabled
smtpd_peername_lookup = no

# Only the test domain is delivered, into one Maildir; anything else
# (bounces included) goes to the error transport, never out.
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = $PF_DOMAIN
virtual_mailbox_base = $PF_DIR/mail
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:$PF_UID
virtual_gid_maps = static:$PF_GID
default_transport = error:mail leaves no test instance
relay_transport = error:mail leaves no test instance
address_verify_map =

smtpd_milters = inet:127.0.0.1:$2
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
EOF
	# Only the services the tests need, none chrooted.
	cat >"$PF_CONF/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
	if ! postfix -c "$PF_CONF" start >"$PF_DIR/start.log" 2>&1; then
		echo "# pf_start: postfix did not start:" >&2
		sed 's/^/#   /' "$PF_DIR/start.log" "$PF_LOG" >&2 2>/dev/null
		return 1
	fi
	PF_MASTER=$(sed -n '1s/[^0-9]//gp' "$PF_QUEUE/pid/master.pid")
	# master -w returns once it listens; check it anyway.
	i=0
	while ! python3 -c "import socket
socket.create_connection(('127.0.0.1', $PF_PORT), 0.2)" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -ge 50 ]; then
			echo "# pf_start: smtpd does not answer on $PF_PORT" >&2
			return 1
		fi
		sleep 0.1
	done
	return 0
}

# Processes of this instance: master starts its own session and every
# daemon stays in it, even after master is gone. Zombies cannot be killed.
pf_pids() {
	[ -n "${PF_MASTER:-}" ] || return 0
	ps -e -o pid= -o sid= -o stat= |
		awk -v sid="$PF_MASTER" '$2 == sid && $3 !~ /^Z/ { print $1 }'
}

pf_stop() {
	[ -n "$PF_DIR" ] || return 0
	postfix -c "$PF_CONF" stop >>"$PF_DIR/start.log" 2>&1
	i=0
	pids=$(pf_pids)
	while [ -n "$pids" ] && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
		pids=$(pf_pids)
	done
	if [ -n "$pids" ]; then
		echo "# pf_stop: killing what is left: $pids" >&2
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null
	fi
	PF_DIR="" PF_MASTER=""
}

# pf_send FILE [FROM [TO[,TO...]]]: one SMTP transaction. Prints the reply
# that ended it on one line, "CODE TEXT" (multi-line replies joined by a
# space), or "000 reason" when there was no SMTP conversation. Returns 0
# only when the message was accepted (250 after DATA).
pf_send() {
	python3 - "$PF_PORT" "$1" "${2:-sender@example.com}" \
		"${3:-rcpt@$PF_DOMAIN}" <<'EOF'
import re, smtplib, sys

port, path, sender, rcpts = sys.argv[1:5]
with open(path, "rb") as f:
	data = f.read()
# SMTP wants CRLF; smtplib.data() leaves bytes as they are.
data = re.sub(rb"\r?\n", b"\r\n", data)

def done(code, text):
	if isinstance(text, bytes):
		text = text.decode("utf-8", "replace")
	print("%03d %s" % (code, " ".join(text.split())))
	sys.exit(0 if code == 250 else 1)

try:
	s = smtplib.SMTP("127.0.0.1", int(port), "client.test", timeout=120)
except (OSError, smtplib.SMTPException) as e:
	done(0, "connect: %s" % e)
try:
	code, text = s.ehlo()
	if code != 250:
		done(code, text)
	code, text = s.mail(sender)
	if code != 250:
		done(code, text)
	ok = 0
	for r in rcpts.split(","):
		code, text = s.rcpt(r)
		if code in (250, 251):
			ok += 1
		else:
			last = (code, text)
	if ok == 0:
		done(*last)
	code, text = s.data(data)
	try:
		s.quit()
	except (OSError, smtplib.SMTPException):
		pass
	done(code, text)
except smtplib.SMTPResponseException as e:
	done(e.smtp_code, e.smtp_error)
except (OSError, smtplib.SMTPException) as e:
	done(0, "%s: %s" % (type(e).__name__, e))
EOF
}

# pf_reply_qid REPLY: the queue id of "250 2.0.0 Ok: queued as QID".
pf_reply_qid() {
	printf '%s\n' "$1" | sed -n 's/.*queued as \([0-9A-Za-z]*\).*/\1/p'
}

pf_delivered_count() {
	find "$PF_MAILDIR/new" "$PF_MAILDIR/cur" -type f | wc -l | tr -d ' '
}

# Messages in the hold queue: where a milter's quarantine puts them.
pf_hold_count() {
	find "$PF_QUEUE/hold" -type f 2>/dev/null | wc -l | tr -d ' '
}

# Messages anywhere in the queue, held ones too; not a number when
# postqueue fails or says something else, so that no test passes on it.
pf_queue_count() {
	postqueue -c "$PF_CONF" -p 2>&1 | awk '
		/^Mail queue is empty/ { n = 0; found = 1 }
		/^-- .* in [0-9]+ Requests?\.$/ { n = $(NF - 1); found = 1 }
		END { print found ? n : "unknown" }'
}

# pf_wait_delivered N [SECONDS]: until the Maildir holds N messages.
pf_wait_delivered() {
	i=0
	while [ "$(pf_delivered_count)" -lt "$1" ]; do
		i=$((i + 1))
		[ $i -ge $((${2:-20} * 10)) ] && return 1
		sleep 0.1
	done
	return 0
}

# pf_wait_queue_empty [SECONDS]: until nothing waits but held mail.
pf_wait_queue_empty() {
	i=0
	while [ -n "$(find "$PF_QUEUE/incoming" "$PF_QUEUE/active" \
		"$PF_QUEUE/deferred" -type f 2>/dev/null)" ]; do
		i=$((i + 1))
		[ $i -ge $((${1:-20} * 10)) ] && return 1
		sleep 0.1
	done
	return 0
}

# pf_maildir_file QID: the delivered message Postfix queued as QID.
pf_maildir_file() {
	grep -lE "with [A-Z]+ id $1([;[:space:]]|\$)" "$PF_MAILDIR"/new/* \
		"$PF_MAILDIR"/cur/* 2>/dev/null | head -1
}

# pf_show_logs: both logs, when a test failed (the TAP lines alone say
# little); meant to run first at exit, while the logs are still there.
pf_show_logs() {
	[ "$T_FAILED" -eq 0 ] && return 0
	echo "# --- edmilter log"
	sed 's/^/#   /' "$WORK/milter.log" 2>/dev/null | tail -40
	echo "# --- postfix maillog"
	sed 's/^/#   /' "${PF_LOG:-/dev/null}" 2>/dev/null | tail -60
}
