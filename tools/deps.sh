#!/bin/sh
# Install the Debian packages basalt builds and tests with, if any is missing.
# Non-interactive; runs apt-get as root or through sudo.  The choice of each
# library is explained in docs/design.md.
set -e
PACKAGES="build-essential pkg-config libmicrohttpd-dev libjansson-dev libpcre2-dev
libopenblas-dev libopenblas0-pthread libcurl4-openssl-dev libsqlite3-dev libyaml-dev
libunistring-dev libpq-dev libhiredis-dev python3 python3-torch python3-numpy python3-jinja2
postgresql redis-server"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "basalt deps: installing$missing"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
