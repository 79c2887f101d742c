#!/usr/bin/env bash
# Kernel matrix: installs what the VMs need (qemu-system-x86, udev, virtme-ng 1.35 from trixie) and
# downloads + caches Debian's kernel packages so scripts/vm-run.sh can boot them over this machine's
# root file system. Idempotent; a second run needs no network. Run as root.
#
#   scripts/kernels.sh           install/refresh what is missing, print "NAME VERSION VMLINUZ" per kernel
#   scripts/kernels.sh --list    JSON [{"name","version","vmlinuz"}] of the cached kernels (no downloads)
#
# Env: SKFP_KERNEL_CACHE (default /var/cache/skfp/kernels)
#      SKFP_KERNEL_REFRESH=1  re-read the archive's indexes (apt-get update on the private lists) so a
#                             newer kernel of a suite gets picked up; without it, cached indexes are used.
#      SKFP_KERNELS="5.10 6.1"  only these short names.
# The machine's own apt sources are never touched: the kernel suites live in a private apt
# configuration under $SKFP_KERNEL_CACHE/apt (APT_CONFIG with its own sources, lists, cache, status).
set -euo pipefail

CACHE=${SKFP_KERNEL_CACHE:-/var/cache/skfp/kernels}
MIRROR=http://deb.debian.org/debian
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# short name | suite | regex for the linux-image package name
KERNELS=(
  "5.10|bullseye|^linux-image-5\.10\.0-[0-9]+-amd64$"
  "6.1|bookworm|^linux-image-6\.1\.0-[0-9]+-amd64$"
  "6.12.43|bookworm-backports|^linux-image-6\.12\.43\+[a-z0-9.]+-amd64$"
  "6.12|trixie|^linux-image-6\.12\.[0-9]+\+[a-z0-9.]+-amd64$"
  "7.x|sid|^linux-image-7\.[0-9.]+\+[a-z0-9.]+-amd64$"
)

log() { echo "kernels: $*" >&2; }
die() { echo "kernels: ERROR: $*" >&2; exit 1; }

list_json() {
  local first=1 name ver vmlinuz
  printf '['
  for entry in "${KERNELS[@]}"; do
    name=${entry%%|*}
    [[ -f $CACHE/installed/$name ]] || continue
    ver=$(<"$CACHE/installed/$name")
    vmlinuz=$CACHE/vmlinuz-$ver
    [[ -f $vmlinuz && -f $CACHE/root/$ver/.skfp-ok ]] || continue
    ((first)) || printf ','
    first=0
    printf '\n  {"name":"%s","version":"%s","vmlinuz":"%s"}' "$name" "$ver" "$vmlinuz"
  done
  printf '\n]\n'
}

if [[ ${1:-} == --list ]]; then
  list_json
  exit 0
elif [[ -n ${1:-} ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi

[[ $(id -u) -eq 0 ]] || die "run as root"
for t in apt-get apt-cache dpkg-deb; do command -v "$t" >/dev/null || die "$t missing"; done

# ---------------------------------------------------------------- private apt configuration
APTDIR=$CACHE/apt
mkdir -p "$APTDIR/no-parts" "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$CACHE/debs" "$CACHE/root" "$CACHE/installed"
[[ -f $APTDIR/status ]] || : >"$APTDIR/status"
{
  for s in bullseye bookworm bookworm-backports trixie sid; do
    echo "deb [signed-by=$KEYRING] $MIRROR $s main"
  done
} >"$APTDIR/sources.list.new"
cmp -s "$APTDIR/sources.list.new" "$APTDIR/sources.list" 2>/dev/null || mv "$APTDIR/sources.list.new" "$APTDIR/sources.list"
rm -f "$APTDIR/sources.list.new"
# Read first (APT_CONFIG); Dir::Etc::parts pointing nowhere keeps /etc/apt/apt.conf.d (hooks, pins) out.
cat >"$APTDIR/apt.conf" <<EOF
Dir::Etc::parts "$APTDIR/no-parts";
Dir::Etc::main "/dev/null";
Dir::Etc::sourcelist "$APTDIR/sources.list";
Dir::Etc::sourceparts "$APTDIR/no-parts";
Dir::Etc::preferences "/dev/null";
Dir::Etc::preferencesparts "$APTDIR/no-parts";
Dir::State "$APTDIR";
Dir::State::Lists "$APTDIR/lists";
Dir::State::status "$APTDIR/status";
Dir::Cache "$APTDIR/cache";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11 "";
Acquire::IndexTargets::deb::Contents-deb "";
APT::Sandbox::User "root";
// the archive this machine reaches is a frozen snapshot: its Release files are past Valid-Until
Acquire::Check-Valid-Until "false";
Acquire::Check-Date "false";
EOF
papt() { APT_CONFIG=$APTDIR/apt.conf "$@"; }

lists_present() { compgen -G "$APTDIR/lists/*_sid_main_binary-amd64_Packages*" >/dev/null; }
if [[ ${SKFP_KERNEL_REFRESH:-0} == 1 ]] || ! lists_present; then
  log "apt-get update (private lists: bullseye bookworm bookworm-backports trixie sid)"
  papt apt-get update -qq >&2 || die "apt-get update on the private lists failed"
fi

# newest version of a package in one suite: prints "VERSION" or nothing
version_in_suite() { # pkg suite
  papt apt-cache madison "$1" 2>/dev/null |
    awk -F' *[|] *' -v s="$2" '{split($3, a, " "); if (a[2] == s"/main") print $2}' | sort -V | tail -1
}
# package names matching a regex that exist in a suite, newest last
names_in_suite() { # regex suite
  local names
  mapfile -t names < <(papt apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$1" | sort -V)
  ((${#names[@]})) || return 0
  papt apt-cache madison "${names[@]}" 2>/dev/null |
    awk -F' *[|] *' -v s="$2" '{split($3, a, " "); if (a[2] == s"/main") print $1}' | sort -uV
}

download() { # pkg version -> path of the .deb in $CACHE/debs
  local pkg=$1 ver=$2 f
  f=$(compgen -G "$CACHE/debs/${pkg}_${ver//:/%3a}_*.deb" | head -1 || true)
  if [[ -z $f ]]; then
    log "downloading $pkg=$ver"
    (cd "$CACHE/debs" && papt apt-get download -qq "$pkg=$ver" >&2) || die "download of $pkg=$ver failed"
    f=$(compgen -G "$CACHE/debs/${pkg}_${ver//:/%3a}_*.deb" | head -1) || die "$pkg=$ver: no .deb after download"
  fi
  echo "$f"
}

# ---------------------------------------------------------------- VM tooling on the host
need=()
for p in qemu-system-x86 udev kmod; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
# Debian's kernels need an initramfs (virtio/9p are modules): virtme-ng builds one with a static busybox.
if ! { command -v busybox-static || command -v busybox.static ||
       { command -v busybox && file -L "$(command -v busybox)" | grep -q 'statically linked'; }; } >/dev/null 2>&1; then
  need+=(busybox-static)
fi
if ((${#need[@]})); then
  log "installing ${need[*]} (bookworm)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
    { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; } ||
    die "could not install ${need[*]}"
fi
if ! dpkg-query -W -f='${Status} ${Version}' virtme-ng 2>/dev/null | grep -q 'install ok installed 1\.35'; then
  vv=$(version_in_suite virtme-ng trixie)
  [[ $vv == 1.35* ]] || die "virtme-ng 1.35 not found in trixie (got '${vv:-nothing}')"
  deb=$(download virtme-ng "$vv")
  log "installing $deb and its dependencies (bookworm)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb" >&2 ||
    die "could not install virtme-ng"
fi
vng --version >/dev/null 2>&1 || die "vng does not run"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing"
command -v depmod >/dev/null || die "depmod missing"

# ---------------------------------------------------------------- kernels
mkdir -p /lib/modules
only=" ${SKFP_KERNELS:-} "
for entry in "${KERNELS[@]}"; do
  IFS='|' read -r name suite regex <<<"$entry"
  [[ $only == "  " || $only == *" $name "* ]] || continue
  image=$(names_in_suite "$regex" "$suite" | tail -1)
  [[ -n $image ]] || die "$name: no package matching $regex in $suite"
  kver=${image#linux-image-}
  root=$CACHE/root/$kver
  if [[ ! -f $root/.skfp-ok ]]; then
    pver=$(version_in_suite "$image" "$suite")
    pkgs=("$image")
    # sid (7.x) splits the kernel: linux-image-VER is a meta package over binary/modules/base.
    deps=$(papt apt-cache show "$image=$pver" | sed -n 's/^Depends: //p' | head -1)
    for part in linux-binary linux-modules linux-base; do
      [[ $deps == *"$part-$kver "* ]] && pkgs+=("$part-$kver")
    done
    rm -rf "$root.tmp"
    mkdir -p "$root.tmp"
    for p in "${pkgs[@]}"; do
      d=$(download "$p" "$(version_in_suite "$p" "$suite")")
      dpkg-deb -x "$d" "$root.tmp"
    done
    rm -rf "$root"
    mv "$root.tmp" "$root"
  fi
  vmlinuz=""
  for c in "$root/boot/vmlinuz-$kver" "$root/usr/lib/modules/$kver/vmlinuz" "$root/lib/modules/$kver/vmlinuz"; do
    [[ -f $c ]] && { vmlinuz=$c; break; }
  done
  [[ -n $vmlinuz ]] || die "$name: no vmlinuz in $image"
  mods=""
  for c in "$root/lib/modules/$kver" "$root/usr/lib/modules/$kver"; do
    [[ -d $c && ! -L $c ]] && { mods=$c; break; }
  done
  [[ -n $mods ]] || die "$name: no modules directory in $image"
  # virtme-ng takes the release from the file name vmlinuz-VER and looks for /lib/modules/VER.
  [[ -f $CACHE/vmlinuz-$kver ]] && cmp -s "$vmlinuz" "$CACHE/vmlinuz-$kver" || cp "$vmlinuz" "$CACHE/vmlinuz-$kver"
  # A real directory, not a symlink: through a symlink the VM finds no module (veth: "Unknown device
  # type"). Hard links into the cache: no extra space. Marked, so a real kernel's tree is left alone.
  if [[ -e /lib/modules/$kver && ! -L /lib/modules/$kver && ! -f /lib/modules/$kver/.skfp-kernel-cache ]]; then
    log "$name: /lib/modules/$kver is a real directory (installed kernel?), leaving it alone"
  elif [[ ! -f /lib/modules/$kver/.skfp-kernel-cache || ! -f $root/.skfp-ok ]]; then
    rm -rf "/lib/modules/$kver.skfp-tmp"
    cp -al "$mods" "/lib/modules/$kver.skfp-tmp"
    touch "/lib/modules/$kver.skfp-tmp/.skfp-kernel-cache"
    rm -rf "/lib/modules/$kver"
    mv "/lib/modules/$kver.skfp-tmp" "/lib/modules/$kver"
    depmod -a "$kver" || die "$name: depmod -a $kver failed"
  fi
  touch "$root/.skfp-ok"
  echo "$kver" >"$CACHE/installed/$name.new" && mv "$CACHE/installed/$name.new" "$CACHE/installed/$name"
  printf '%-8s %-22s %s\n' "$name" "$kver" "$CACHE/vmlinuz-$kver"
done
