#!/bin/sh
# install-deps.sh: install the Debian 12 packages edmilter needs to build,
# to run its demo and to run its tests. Safe to run again; it installs only
# what is missing. Needs root (or sudo).
#
#   sh contrib/install-deps.sh           what the build, demo and tests need
#   sh contrib/install-deps.sh --bench   also the peer milters the benchmark
#                                        compares edmilter with (clamd,
#                                        clamav-milter, opendkim, opendmarc);
#                                        their system services are stopped
#                                        and left disabled: tests/bench/
#                                        peers.sh runs private instances.
set -eu

BENCH=0
case "${1:-}" in
--bench) BENCH=1 ;;
"") ;;
*)
	echo "usage: $0 [--bench]" >&2
	exit 2
	;;
esac

PKGS="build-essential autoconf automake libtool pkg-config
libmilter-dev libclamav-dev libspf2-dev libopendkim-dev libopendmarc-dev
libpcre2-dev libunbound-dev libevent-dev libgmime-3.0-dev publicsuffix
clamav-testfiles postfix miltertest zip python3 swaks strace
knot knot-dnsutils openssl python3-yaml python3-dkim python3-nacl
python3-cryptography clang libclang-rt-14-dev"
BENCH_PKGS="clamav-daemon clamav-milter opendkim opendmarc"
BENCH_SERVICES="clamav-daemon clamav-freshclam clamav-milter opendkim opendmarc"
[ "$BENCH" -eq 0 ] || PKGS="$PKGS $BENCH_PKGS"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
		missing="$missing $p"
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# The peer packages start their services from their maintainer scripts
# (where policy-rc.d allows it): stop them, and keep them from starting at
# boot, so that only the benchmark's own instances run.
stop_peer_services() {
	[ "$BENCH" -eq 1 ] || return 0
	for svc in $BENCH_SERVICES; do
		[ -x "/etc/init.d/$svc" ] || continue
		if command -v systemctl >/dev/null 2>&1 &&
			[ -d /run/systemd/system ]; then
			$SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
		else
			$SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
			$SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
	done
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]
	then
		$SUDO systemctl disable --now clamav-daemon.socket \
			>/dev/null 2>&1 || true
	fi
	echo "install-deps: peer services stopped and disabled:" \
		"$BENCH_SERVICES"
}

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	stop_peer_services
	exit 0
fi
echo "install-deps: installing:$missing"
# Postfix must not configure or start a system instance of its own: the demo
# and the tests run private instances.
echo "postfix postfix/main_mailer_type select No configuration" |
	$SUDO debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
stop_peer_services
