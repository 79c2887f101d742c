#!/usr/bin/env bash
# Boots a kernel in a qemu VM (TCG: nested KVM hangs on these machines) over this machine's root file
# system with virtme-ng, runs a command inside as root, and exits with the command's exit code.
#
#   scripts/vm-run.sh [options] KERNEL -- CMD...
#
# KERNEL   a vmlinuz-VER file (its modules must be in /lib/modules/VER), or a short name cached by
#          scripts/kernels.sh: 5.10, 6.1, 6.12.43, 6.12, 7.x
# CMD      one argument: a shell script text (bash -c); several arguments: an exact argv.
# Options  --timeout SEC  (default 900; whole VM, boot included)   --memory 4G   --cpus 2
#          --boot-timeout SEC  (default 240) until CMD starts (a kernel that cannot boot hangs in qemu)
#          --out DIR      copy what the command wrote to $SKFP_VM_OUT (in the VM) to DIR on the host
#          --overlay DIR  make DIR writable in the VM through a tmpfs overlay (vng --overlay-rwdir): the
#                         command may write there (builds, test output), the host's DIR stays untouched
#          --verbose      show the kernel console (boot log) on stdout
#          --keep         keep the VM's temp dir (path printed)
# Exit     CMD's exit code; 124 timeout; 125 the VM did not boot or died before CMD finished;
#          2 usage.
#
# What the VM shares with the host: the root file system read-only (qemu 9p export with readonly=on:
# enforced by the host, not just a ro mount in the guest). /etc /usr /var /tmp /home /opt /srv are
# copy-on-write overlays whose upper layer is a tmpfs in the VM; /run, /sys, /sys/fs/cgroup, bpffs are
# the VM's own. The only host directory the VM can write is this run's temp dir (/tmp/skfp-vm.*),
# shared read-write at the same path; $SKFP_VM_OUT points into it.
set -euo pipefail

CACHE=${SKFP_KERNEL_CACHE:-/var/cache/skfp/kernels}
timeout=900 boot_timeout=240 memory=4G cpus=2 out="" verbose=0 keep=0 overlays=()
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
  case $1 in
    --timeout) timeout=${2:?}; shift 2 ;;
    --boot-timeout) boot_timeout=${2:?}; shift 2 ;;
    --memory) memory=${2:?}; shift 2 ;;
    --cpus) cpus=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --overlay) overlays+=("--overlay-rwdir=$(realpath "${2:?}")"); shift 2 ;;
    --verbose|-v) verbose=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    --) usage ;;
    -*) echo "vm-run: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
(($# >= 3)) && [[ $2 == -- ]] || usage
kernel=$1
shift 2

die() { echo "vm-run: ERROR: $*" >&2; exit 125; }
[[ $(id -u) -eq 0 ]] || die "run as root (the VM's user is root; qemu exports / as root)"
command -v vng >/dev/null || die "vng missing: run scripts/kernels.sh"
if [[ ! -f $kernel && -f $CACHE/installed/$kernel ]]; then
  kernel=$CACHE/vmlinuz-$(<"$CACHE/installed/$kernel")
fi
[[ -f $kernel ]] || die "no kernel '$kernel' (a vmlinuz-VER path or a name from scripts/kernels.sh --list)"
kernel=$(realpath "$kernel")
kver=$(basename "$kernel")
kver=${kver#vmlinuz-}
[[ -d /lib/modules/$kver ]] ||
  echo "vm-run: warning: /lib/modules/$kver missing: the VM will have no modules (name the file vmlinuz-VER)" >&2

tmp=$(mktemp -d /tmp/skfp-vm.XXXXXX)
share=$tmp/share
mkdir -p "$share/out"
chmod 755 "$tmp"
cleanup() {
  if [[ -n ${pgid:-} ]] && kill -0 -- "-$pgid" 2>/dev/null; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
  if ((keep)); then echo "vm-run: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
  echo '#!/bin/bash'
  printf 'export SKFP_VM_OUT=%q\n' "$share/out"
  printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
  printf ': >%q\n' "$share/started"
  # The kernel's once-per-boot keys (net_get_random_once: the flow-hash secret that an unconnected
  # UDPv6 send first needs for its flow label, the TCP/UDP hash and sequence secrets) are static keys,
  # patched live (int3, then the new bytes) at their first use. Under TCG a vCPU that runs such a site
  # while another patches it can execute the int3 after the patch is done: "Oops: int3" in
  # flow_hash_from_keys killed the 6.12 VMs three times, at v2ray's first UDPv6 reply in the suite
  # (`scripts/vm-run.sh` with --verbose shows the console). A real host flips them once at boot. So
  # the VM flips them here, before CMD, while nothing else runs: one TCP connect and one UDP send to
  # an unused port on each loopback address (refused, no reply needed).
  echo 'ip link set lo up 2>/dev/null'
  # /dev/net/tun appears when the tun module loads (a booted system's udev rules load it on first
  # open; the VM has none of them): the suite's VPN tunnels need it
  echo 'modprobe tun 2>/dev/null'
  echo 'for a in 127.0.0.1 ::1; do (exec 3<>"/dev/tcp/$a/9") 2>/dev/null; echo >"/dev/udp/$a/9"; done 2>/dev/null'
  if (($# == 1)); then
    printf 'bash -c %q\n' "$1"
  else
    printf '%q ' "$@"
    echo
  fi
  echo 'rc=$?'
  printf 'echo "$rc" >%q\n' "$share/rc"
  echo 'exit "$rc"'
} >"$share/cmd.sh"

# mitigations=off: under TCG the page-table switch of every syscall (KPTI) is costly; in the 6.1 VM
# `ip rule show` took 1.75 s with the mitigations, 0.38 s without. Root's BPF loads skip the
# verifier's Spectre sanitising either way (perfmon_capable), so what the matrix tests is the same.
# modprobe.blacklist: qemu's emulated PC hardware (AHCI and its CD-ROM, watchdogs, mouse, speaker, SMBus,
# KVM) that udev's coldplug would load modules for at boot; nothing skfp tests uses them (6.1 VM boot
# 35.8 s -> 32.3 s). The test's own modules (veth, sch_ingress, ...) load on demand as before.
# --force-9p: the root is the 9p export described above; vng would first try virtiofsd, which fails here
# and falls back to 9p anyway (6.1 VM, `true`: 47.7 s -> 35.8 s boot to exit, one run each).
args=(--disable-kvm --disable-microvm --force-9p -r "$kernel" --user root --memory "$memory" --cpus "$cpus"
  --rwdir="$share=$share" "${overlays[@]}" --append mitigations=off
  --append "modprobe.blacklist=kvm,kvm_amd,kvm_intel,ahci,libata,sr_mod,cdrom,sg,psmouse,pcspkr,iTCO_wdt,i6300esb,lpc_ich,i2c_i801,powernow_k8")
((verbose)) && args+=(--verbose)
# setsid: vng runs virtme-run, which forks qemu; a timeout must take the whole group down.
# TMPDIR: virtme's own temp file (the guest's exit-code channel) goes into our temp dir.
# FIFOs: qemu opens /proc/self/fd/1 and /proc/self/fd/2 by name, which on a regular file starts at
# offset 0 and overwrites what is there (e.g. `vm-run.sh ... >log`); through a FIFO it just streams.
# What vng printed is also kept (said.log), for an exit before the command started.
boot() {
  rm -f "$tmp/stdout" "$tmp/stderr" "$tmp/said.log"
  mkfifo "$tmp/stdout" "$tmp/stderr"
  tee -a "$tmp/said.log" <"$tmp/stdout" &
  local cat_out=$!
  tee -a "$tmp/said.log" <"$tmp/stderr" >&2 &
  local cat_err=$!
  TMPDIR=$tmp setsid vng "${args[@]}" -- "bash $share/cmd.sh" </dev/null >"$tmp/stdout" 2>"$tmp/stderr" &
  pgid=$!
  local now boot_deadline=$(($(date +%s) + boot_timeout))
  timed_out=0
  while kill -0 "$pgid" 2>/dev/null; do
    now=$(date +%s)
    if ((now >= deadline)) || { ((now >= boot_deadline)) && [[ ! -f $share/started ]]; }; then
      timed_out=1
      kill -TERM -- "-$pgid" 2>/dev/null || true
      sleep 5
      kill -KILL -- "-$pgid" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  vrc=0
  wait "$pgid" 2>/dev/null || vrc=$?
  pgid=""
  wait "$cat_out" "$cat_err" 2>/dev/null || true
}
start=$(date +%s.%N)
deadline=$(($(date +%s) + timeout)) # the whole run's, a second start included
boot
# qemu/vng has exited (255, 3 s, nothing printed) before the guest started, in two CI runs: once,
# and once twice in a row (2026-12-08, 7.x); starts of the same kernel right after booted (3 of 3,
# 4 of 4). Such an exit leaves nothing of the command to lose: the VM starts again, up to three
# times in all, 2 s apart, and each early exit is said with the last of what vng printed.
for again in 2 3; do
  ((!timed_out)) && [[ ! -f $share/started ]] || break
  echo "vm-run: the VM with $kver exited before the command started (vng exit $vrc, said: $(tail -n 3 "$tmp/said.log" 2>/dev/null | tr '\n' ' ' | cut -c1-300)); starting it again ($again of 3)" >&2
  sleep 2
  boot
done
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

if [[ -n $out ]]; then
  mkdir -p "$out"
  cp -a "$share/out/." "$out/"
fi
if ((timed_out)) && [[ ! -f $share/started ]]; then
  echo "vm-run: ERROR: the VM with $kver did not boot within ${boot_timeout}s (killed); rerun with --verbose for the kernel log" >&2
  exit 125
fi
if ((timed_out)); then
  echo "vm-run: TIMEOUT: the command in the VM with $kver did not finish within ${timeout}s (killed)" >&2
  exit 124
fi
if [[ ! -f $share/started ]]; then
  echo "vm-run: ERROR: the VM with $kver did not boot or could not start the command (vng exit $vrc, ${secs}s); rerun with --verbose for the kernel log" >&2
  exit 125
fi
if [[ ! -f $share/rc ]]; then
  echo "vm-run: ERROR: the VM with $kver died while the command ran (kernel panic? vng exit $vrc, ${secs}s); rerun with --verbose" >&2
  exit 125
fi
rc=$(<"$share/rc")
echo "vm-run: $kver: exit $rc after ${secs}s" >&2
exit "$rc"
