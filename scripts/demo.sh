#!/usr/bin/env bash
# The demo: a VM boots over the network from nixboot, and you watch its
# console until it says it booted over the network.
#
#   sudo bash scripts/demo.sh
#
# As root on Debian 12 it
#   1. installs what it needs (scripts/install-deps.sh: QEMU, iPXE, a kernel,
#      dnsmasq-base, busybox-static, Go modules),
#   2. builds examples/netbootd, whose built-in demo profile assembles a demo
#      initrd with nixboot's initrd package (busybox /init printing a
#      greeting) for the Debian kernel at /var/cache/nixboot/vmlinuz,
#   3. creates a private network namespace with a bridge (10.99.0.1/24) and a
#      tap device, and runs netbootd there: full DHCP on the bridge, TFTP and
#      HTTP on 10.99.0.1 (dnsmasq only sends IPv6 router advertisements, so
#      that iPXE does not wait 15 s for IPv6),
#   4. boots a QEMU VM (SeaBIOS, QEMU's iPXE ROM) on the tap, with its serial
#      console on this terminal: DHCP, iPXE script, kernel and initrd over
#      HTTP, then the kernel and the demo's /init,
#   5. tears everything down (also on failure or Ctrl-C).
#
# No packet leaves the namespace: the machine's own interfaces are never
# touched. It gives up after DEMO_TIMEOUT seconds (default 300) and exits
# non-zero unless the VM said "booted over the network".
set -euo pipefail
cd "$(dirname "$0")/.."

TIMEOUT=${DEMO_TIMEOUT:-300}
NS=nixboot-demo-$$
SUBNET=10.99.0
say() { printf '\033[1;34m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo bash scripts/demo.sh): it creates a network namespace and tap device"
export PATH="$PATH:/usr/sbin:/sbin:/usr/local/go/bin"
command -v go >/dev/null || die "Go is not installed; nixboot needs Go 1.25 or later (https://go.dev/dl/)"

say "installing dependencies (scripts/install-deps.sh)"
bash scripts/install-deps.sh

work=$(mktemp -d /tmp/nixboot-demo.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building examples/netbootd"
go build -o "$work/netbootd" ./examples/netbootd

say "creating network namespace $NS (bridge nbdemo0 $SUBNET.1/24, tap nbdemotap0)"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add nbdemo0 address 02:6e:62:64:00:01 type bridge stp_state 0 forward_delay 0
ip -n "$NS" addr add "$SUBNET.1/24" dev nbdemo0
ip -n "$NS" addr add fd6e:6264::1/64 dev nbdemo0 nodad
ip -n "$NS" tuntap add dev nbdemotap0 mode tap
ip -n "$NS" link set nbdemotap0 master nbdemo0 up
ip -n "$NS" link set nbdemo0 up

# Router advertisements only (no DHCP: port=0 and no IPv4 range).
ip netns exec "$NS" dnsmasq --keep-in-foreground --port=0 --interface=nbdemo0 --bind-interfaces \
  --no-resolv --no-hosts --enable-ra --dhcp-range=::,constructor:nbdemo0,ra-only \
  --pid-file= --user=root --group=root --log-facility="$work/dnsmasq.log" &
pids+=($!)

say "starting nixboot (netbootd: full DHCP on nbdemo0, TFTP and HTTP on $SUBNET.1)"
ip netns exec "$NS" "$work/netbootd" -interface nbdemo0 -dhcp full -range "$SUBNET.100-$SUBNET.199" \
  -http "$SUBNET.1:80" -tftp "$SUBNET.1:69" >"$work/netbootd.out" 2>"$work/netbootd.log" &
pids+=($!)
for _ in $(seq 100); do
  grep -q "netboot: serving" "$work/netbootd.log" 2>/dev/null && break
  kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/netbootd.log" >&2; die "netbootd exited"; }
  sleep 0.1
done
grep -q "netboot: serving" "$work/netbootd.log" || { cat "$work/netbootd.log" >&2; die "netbootd did not start"; }
sed 's/^/   /' "$work/netbootd.out"

accel=tcg
if [ -w /dev/kvm ] && [ ! -e /sys/module/kvm_pvm ] && { [ -e /sys/module/kvm_intel ] || [ -e /sys/module/kvm_amd ]; }; then
  accel=kvm
fi
say "booting a VM from the network ($accel; its console follows; at most ${TIMEOUT}s)"
echo
set +e
timeout --kill-after=5 "$TIMEOUT" ip netns exec "$NS" qemu-system-x86_64 -no-user-config -nodefaults \
  -machine pc,graphics=off -accel "$accel" -m 512 -smp 1 -display none -serial stdio -monitor none -no-reboot \
  -netdev tap,id=n0,ifname=nbdemotap0,script=no,downscript=no \
  -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,bootindex=1 </dev/null | tee "$work/console.log"
rc=${PIPESTATUS[0]}
set -e
echo
if grep -q "booted over the network" "$work/console.log"; then
  say "the VM booted over the network from nixboot; boot state as nixboot saw it:"
  ip netns exec "$NS" curl -s --max-time 5 "http://$SUBNET.1/state.json" || true
  echo
  say "done; tearing down"
  exit 0
fi
[ "$rc" = 124 ] && echo "demo: no boot within ${TIMEOUT}s" >&2
echo "demo: the VM did not report a network boot; nixboot's log:" >&2
tail -30 "$work/netbootd.log" >&2
exit 1
