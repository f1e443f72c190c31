#!/usr/bin/env bash
# Installs what nixboot's tests need on a Debian 12 machine: Debian packages
# (as root), a kernel image for VM boots, staticcheck and the Go modules.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2

PACKAGES=(
  # clients, peers and checkers the tests drive
  kmod cpio libarchive-tools zstd xz-utils lz4 busybox-static udhcpc isc-dhcp-client kea-admin
  tftp-hpa atftp tftpd-hpa nginx-light curl dnsmasq-base iproute2 util-linux nftables
  gdisk fdisk dosfstools e2fsprogs xfsprogs btrfs-progs mtools
  # firmware and VMs for end-to-end boots
  qemu-system-x86 ipxe-qemu ipxe ovmf pxelinux syslinux-common
  # real Nix closures, offline
  nix-bin
)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The kernel for VM boots: unpack Debian's linux-image-amd64 rather than
  # install it, so the host's boot setup is never touched. Its modules go
  # to /var/cache/nixboot/lib/modules/<release> (with modules.dep), and the
  # NIC drivers test initrds load are also copied flat to
  # /var/cache/nixboot/modules.
  if [ ! -s /var/cache/nixboot/vmlinuz ] || [ ! -s /var/cache/nixboot/modules/virtio_net.ko ] ||
     ! ls /var/cache/nixboot/lib/modules/*/modules.dep >/dev/null 2>&1; then
    mkdir -p /var/cache/nixboot
    tmp=$(mktemp -d)
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
    (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null 2>&1)
    dpkg-deb -x "$tmp"/*.deb "$tmp/x"
    rel=$(ls "$tmp/x/lib/modules")
    rm -rf /var/cache/nixboot/lib /var/cache/nixboot/modules
    mkdir -p /var/cache/nixboot/lib/modules /var/cache/nixboot/modules
    cp -a "$tmp/x/lib/modules/$rel" /var/cache/nixboot/lib/modules/
    if [ ! -s "/var/cache/nixboot/lib/modules/$rel/modules.dep" ]; then
      depmod -b /var/cache/nixboot "$rel"
    fi
    for m in virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net e1000; do
      find "$tmp/x/lib/modules/$rel" -name "$m.ko" -exec cp {} /var/cache/nixboot/modules/ \;
    done
    cp "$tmp"/x/boot/vmlinuz-* /var/cache/nixboot/vmlinuz.tmp
    mv /var/cache/nixboot/vmlinuz.tmp /var/cache/nixboot/vmlinuz
    rm -rf "$tmp"
    echo "install-deps: kernel $pkg at /var/cache/nixboot/vmlinuz, modules in /var/cache/nixboot/lib/modules/$rel"
  fi
else
  echo "install-deps: not root or no apt-get: Debian packages not installed; tests that need them will skip"
fi

go mod download
if ! command -v staticcheck >/dev/null && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then
  go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi
