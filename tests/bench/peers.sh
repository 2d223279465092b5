# peers.sh: the milter chain that edmilter replaces, from Debian's own
# packages, started on loopback for the benchmark. Sourced, never run.
#
#   peers_start WORKDIR DNS_ADDR DNS_PORT SIGDIR
#   peers_stop
#
# peers_start writes a configuration of its own for each daemon into
# WORKDIR (never the system's /etc files; no systemd, no init scripts) and
# starts, in the foreground of this shell, each listening on a unix socket
# in WORKDIR:
#
#   clamd          the ClamAV daemon, DatabaseDirectory SIGDIR, temporary
#                  files in WORKDIR/tmp; the scan settings of Debian's
#                  /etc/clamav/clamd.conf, but a listen queue of 128 (with
#                  Debian's 15, at 64 connections clamav-milter cannot
#                  reach clamd for about 2% of the messages and tempfails
#                  them: "No clamd server appears to be available");
#   clamav-milter  OnInfected Reject, OnFail Defer, AddHeader Replace,
#                  streaming each message to that clamd;
#   opendkim       Mode v (verify only), its libunbound resolver forwarding
#                  every query to DNS_ADDR (Nameservers; not
#                  ResolverConfiguration: Debian's opendkim parses that
#                  unbound file again for each message, from many threads
#                  at once, and dies with "fatal flex scanner internal
#                  error" under load);
#   opendmarc      RejectFailures true, HoldQuarantinedMessages true,
#                  SPFSelfValidate true (no SPF milter in the chain: DMARC
#                  gets SPF from its own check), DKIM results from
#                  opendkim's Authentication-Results (same authserv-id).
#
# opendmarc has no resolver option: libopendmarc and libspf2 read
# /etc/resolv.conf, which has no port syntax. It runs in a private mount
# namespace (unshare -m) where a resolv.conf of ours, naming DNS_ADDR, is
# bind-mounted over /etc/resolv.conf; so DNS_PORT must be 53 (any
# 127.x.y.z address will do) and this needs root. Nothing leaves loopback.
#
# Exports PEERS_MILTERS (the socket specs in chain order: clamav-milter,
# opendkim, opendmarc) and PEERS_PIDS (every process started). Returns 0,
# 1 when a daemon did not start (its log is shown; what did start is
# stopped), 77 when the packages or the rights are missing.
# peers_stop stops every process peers_start started; it is safe to call
# twice.

PEERS_PIDS=""
PEERS_MILTERS=""
PEERS_DIR=""

# peers_missing: the names of the missing programs, empty when none is.
peers_missing() {
	m=""
	for p in clamd clamav-milter opendkim opendmarc unshare; do
		command -v "$p" >/dev/null 2>&1 ||
			[ -x "/usr/sbin/$p" ] || m="$m $p"
	done
	echo "$m"
}

# peers_alive PID: the process runs (an exited child not yet reaped
# still answers kill -0).
peers_alive() {
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
	[ -n "$st" ] && [ "$st" != Z ]
}

# peers_wait SOCKET PID NAME: waits (60 s at most: clamd loads its
# database first) until the unix socket accepts connections.
peers_wait() {
	i=0
	while [ $i -lt 600 ]; do
		if [ -S "$1" ] && python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(0.5)
s.connect(sys.argv[1])' "$1" 2>/dev/null; then
			return 0
		fi
		if ! peers_alive "$2"; then
			echo "peers: $3 exited at start:"
			tail -20 "$PEERS_DIR/$3.log" | sed 's/^/peers:   /'
			return 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
	echo "peers: $3 does not answer on $1"
	return 1
}

peers_conf_clamd() {
	cat <<EOC
# clamd for the benchmark: Debian's scan settings, our paths.
Foreground true
LocalSocket $PEERS_DIR/clamd.sock
FixStaleSocket true
PidFile $PEERS_DIR/clamd.pid
LogFile $PEERS_DIR/clamd.log
LogTime true
LogClean false
DatabaseDirectory $1
TemporaryDirectory $PEERS_DIR/tmp
SelfCheck 3600
MaxThreads 12
MaxQueue 100
MaxConnectionQueueLength 128
ReadTimeout 180
CommandReadTimeout 30
SendBufTimeout 200
IdleTimeout 30
ScanMail true
ScanArchive true
ScanPE true
ScanELF true
ScanOLE2 true
ScanPDF true
ScanHTML true
ScanSWF true
ScanXMLDOCS true
ScanHWP3 true
ArchiveBlockEncrypted false
PhishingSignatures true
PhishingScanURLs true
HeuristicAlerts true
HeuristicScanPrecedence false
StructuredDataDetection false
DetectPUA false
ScanPartialMessages false
ExtendedDetectionInfo true
AllowAllMatchScan true
Bytecode true
BytecodeSecurity TrustSigned
BytecodeTimeout 60000
MaxEmbeddedPE 10M
MaxHTMLNormalize 10M
MaxHTMLNoTags 2M
MaxScriptNormalize 5M
MaxZipTypeRcg 1M
MaxScanTime 120000
MaxScanSize 100M
MaxFileSize 25M
MaxRecursion 16
MaxFiles 10000
MaxPartitions 50
MaxIconsPE 100
PCREMatchLimit 10000
PCRERecMatchLimit 5000
PCREMaxFileSize 25M
MaxRecHWP3 16
StreamMaxLength 25M
EOC
}

peers_conf_clamav_milter() {
	cat <<EOC
# clamav-milter for the benchmark: Debian's settings, refusing viruses.
MilterSocket unix:$PEERS_DIR/clamav-milter.sock
FixStaleSocket true
Foreground true
PidFile $PEERS_DIR/clamav-milter.pid
ClamdSocket unix:$PEERS_DIR/clamd.sock
OnClean Accept
OnInfected Reject
OnFail Defer
AddHeader Replace
ReadTimeout 120
MaxFileSize 25M
SupportMultipleRecipients false
TemporaryDirectory $PEERS_DIR/tmp
LogFile $PEERS_DIR/clamav-milter.log
LogTime true
LogInfected Basic
LogClean Off
EOC
}

peers_conf_opendkim() {
	cat <<EOC
# opendkim for the benchmark: verify only.
Mode v
Socket local:$PEERS_DIR/opendkim.sock
PidFile $PEERS_DIR/opendkim.pid
UMask 007
Syslog no
AuthservID mx.bench.example
Canonicalization relaxed/simple
OversignHeaders From
Nameservers $PEERS_DNS
DNSTimeout 2
EOC
}

peers_conf_opendmarc() {
	cat <<EOC
# opendmarc for the benchmark: enforce p=reject and p=quarantine.
Socket local:$PEERS_DIR/opendmarc.sock
PidFile $PEERS_DIR/opendmarc.pid
UMask 0002
Syslog false
AuthservID mx.bench.example
TrustedAuthservIDs mx.bench.example
PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat
RejectFailures true
HoldQuarantinedMessages true
SPFSelfValidate true
IgnoreAuthenticatedClients true
FailureReports false
DNSTimeout 2
EOC
}

# peers_spawn NAME COMMAND...: starts a daemon in the background, its
# output in WORKDIR/NAME.log.
peers_spawn() {
	n=$1
	shift
	"$@" >>"$PEERS_DIR/$n.log" 2>&1 &
	PEERS_PIDS="$PEERS_PIDS $!"
	PEERS_LAST=$!
}

peers_start() {
	if [ $# -ne 4 ]; then
		echo "peers: usage: peers_start WORKDIR DNS_ADDR DNS_PORT SIGDIR"
		return 1
	fi
	m=$(peers_missing)
	if [ -n "$m" ]; then
		echo "peers: missing:$m (packages clamav-daemon clamav-milter" \
			"opendkim opendmarc; contrib/install-deps.sh --bench)"
		return 77
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "peers: needs root (a private mount namespace for" \
			"opendmarc's resolv.conf)"
		return 77
	fi
	if [ "$3" != 53 ]; then
		echo "peers: opendmarc reads resolv.conf, which has no port:" \
			"the DNS server must listen on port 53 (got $2@$3)"
		return 77
	fi
	PEERS_DIR=$1
	PEERS_DNS=$2
	mkdir -p "$PEERS_DIR/tmp"
	PEERS_PIDS=""
	PEERS_MILTERS=""

	# Configurations, all in PEERS_DIR.
	peers_conf_clamd "$4" >"$PEERS_DIR/clamd.conf"
	peers_conf_clamav_milter >"$PEERS_DIR/clamav-milter.conf"
	peers_conf_opendkim >"$PEERS_DIR/opendkim.conf"
	peers_conf_opendmarc >"$PEERS_DIR/opendmarc.conf"
	echo "nameserver $2" >"$PEERS_DIR/resolv.conf"
	echo "options timeout:2 attempts:1" >>"$PEERS_DIR/resolv.conf"

	# clamd first: clamav-milter checks it at start.
	peers_spawn clamd clamd -c "$PEERS_DIR/clamd.conf"
	peers_wait "$PEERS_DIR/clamd.sock" "$PEERS_LAST" clamd ||
		{ peers_stop; return 1; }
	peers_spawn clamav-milter clamav-milter -c \
		"$PEERS_DIR/clamav-milter.conf"
	peers_wait "$PEERS_DIR/clamav-milter.sock" "$PEERS_LAST" \
		clamav-milter || { peers_stop; return 1; }
	peers_spawn opendkim opendkim -f -x "$PEERS_DIR/opendkim.conf"
	peers_wait "$PEERS_DIR/opendkim.sock" "$PEERS_LAST" opendkim ||
		{ peers_stop; return 1; }
	# The private namespace: unshare and sh exec, so the pid stays the
	# daemon's.
	# shellcheck disable=SC2016 # expanded by the inner sh
	peers_spawn opendmarc unshare -m --propagation private sh -c \
		'mount --bind "$1" /etc/resolv.conf && exec opendmarc -f -c "$2"' \
		sh "$PEERS_DIR/resolv.conf" "$PEERS_DIR/opendmarc.conf"
	peers_wait "$PEERS_DIR/opendmarc.sock" "$PEERS_LAST" opendmarc ||
		{ peers_stop; return 1; }
	PEERS_MILTERS="unix:$PEERS_DIR/clamav-milter.sock"
	PEERS_MILTERS="$PEERS_MILTERS unix:$PEERS_DIR/opendkim.sock"
	PEERS_MILTERS="$PEERS_MILTERS unix:$PEERS_DIR/opendmarc.sock"
	export PEERS_MILTERS PEERS_PIDS
	return 0
}

peers_stop() {
	[ -n "$PEERS_PIDS" ] || return 0
	# The milters before clamd, last started first.
	for p in $(echo "$PEERS_PIDS" | tr ' ' '\n' | sed '/^$/d' | tac); do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $PEERS_PIDS; do
		i=0
		while peers_alive "$p" && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	PEERS_PIDS=""
	PEERS_MILTERS=""
}
