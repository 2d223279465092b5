# dns.sh: a real authoritative DNS server (Knot DNS) on loopback, serving
# zones a test writes. Sourced after tests/lib.sh, never run.
#
#   dns_zone ZONE <<EOF ... records ... EOF   writes $WORK/dns/ZONE.zone
#   dns_start                                 serves every zone written,
#                                             on 127.0.0.1:$DNS_PORT
#   dns_stop                                  (also at exit)
#
# Records use zone-file syntax with names relative to the zone or absolute;
# the SOA and NS are added. TXT values over 255 bytes must be split into
# several "strings" by the caller (dns_split_txt helps).

DNS_DIR="$WORK/dns"

dns_zone() {
	mkdir -p "$DNS_DIR"
	{
		echo "\$ORIGIN $1."
		echo "\$TTL 60"
		echo "@ SOA ns.$1. hostmaster.$1. 1 3600 600 86400 60"
		echo "@ NS ns.$1."
		echo "ns A 127.0.0.1"
		cat
	} >"$DNS_DIR/$1.zone"
}

# dns_split_txt STRING: the string as quoted 255-byte chunks.
dns_split_txt() {
	printf '%s' "$1" | fold -w 250 | sed 's/.*/"&"/' | tr '\n' ' '
}

dns_start() {
	DNS_PORT=$(free_port)
	mkdir -p "$DNS_DIR/db"
	{
		echo "server:"
		echo "    listen: 127.0.0.1@$DNS_PORT"
		echo "    rundir: $DNS_DIR"
		echo "database:"
		echo "    storage: $DNS_DIR/db"
		echo "log:"
		echo "  - target: stderr"
		echo "    any: warning"
		echo "zone:"
		for z in "$DNS_DIR"/*.zone; do
			n=$(basename "$z" .zone)
			echo "  - domain: $n"
			echo "    file: $z"
			echo "    zonefile-sync: -1"
			echo "    journal-content: none"
		done
	} >"$DNS_DIR/knot.conf"
	knotd -c "$DNS_DIR/knot.conf" >"$DNS_DIR/knot.log" 2>&1 &
	DNS_PID=$!
	CLEANUP="$CLEANUP dns_stop"
	# Ready when it answers at all: REFUSED for the root, which it
	# does not serve, is an answer too.
	i=0
	while [ $i -lt 100 ]; do
		if kdig +time=1 +retry=0 -p "$DNS_PORT" @127.0.0.1 \
			SOA . 2>/dev/null | grep -q 'status:'; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	echo "# knotd did not start:"
	sed 's/^/#   /' "$DNS_DIR/knot.log"
	return 1
}

dns_stop() {
	[ -n "${DNS_PID:-}" ] || return 0
	kill "$DNS_PID" 2>/dev/null
	wait "$DNS_PID" 2>/dev/null
	DNS_PID=""
}
