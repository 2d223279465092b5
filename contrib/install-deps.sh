#!/bin/sh
# install-deps.sh: install the Debian 12 packages edmilter needs to build,
# to run its demo and to run its tests. Safe to run again; it installs only
# what is missing. Needs root (or sudo).
set -eu

PKGS="build-essential autoconf automake libtool pkg-config
libmilter-dev libclamav-dev libspf2-dev libopendkim-dev libopendmarc-dev
libpcre2-dev libunbound-dev libevent-dev libgmime-3.0-dev publicsuffix
clamav-testfiles postfix miltertest zip python3 swaks
knot knot-dnsutils openssl python3-yaml python3-dkim python3-nacl
python3-cryptography clang libclang-rt-14-dev"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && { echo "install-deps: all packages present"; exit 0; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing:$missing"
# Postfix must not configure or start a system instance of its own: the demo
# and the tests run private instances.
echo "postfix postfix/main_mailer_type select No configuration" |
	$SUDO debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
