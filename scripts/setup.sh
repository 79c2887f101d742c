#!/usr/bin/env bash
# Installs what skfp, its demo and its tests need on a Debian machine, then builds.
# Idempotent and quick when everything is already there. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(clang llvm bpftool libbpf-dev linux-libc-dev iproute2 util-linux procps mount
  iperf3 socat sockperf v2ray iptables nftables curl python3
  systemd python3-yaml shadowsocks-libev dnsmasq-base bind9-dnsutils
  golang-go redis-server redis-tools nginx wrk wireguard-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]} — run as root, or: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# npm ci when node_modules is missing or older than the lock file
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund >&2
fi
npm run --silent build:ts >&2
node bin/run.js build >&2
