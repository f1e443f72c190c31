package netboot

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"github.com/nixboot/nixboot/ipxe"
)

// Machine is what the server knows about a machine asking to boot: from its
// DHCP request, or from the query of its iPXE script request.
type Machine struct {
	MAC      net.HardwareAddr
	UUID     string            // SMBIOS UUID as iPXE prints it; "" if unknown
	Arch     string            // iPXE ${buildarch} (i386, x86_64, arm64) or firmware name; "" if unknown
	Hostname string            // as the machine reported it; "" if unknown
	IP       netip.Addr        // the address the request came from; zero if unknown
	Labels   map[string]string // anything else a caller wants selectors to see
}

// Facts returns the machine's identity as selector labels: "mac" (colon
// separated, lower case), "uuid" (lower case), "arch", "hostname", "ip" when
// known, plus Labels (which cannot override the built-in keys).
func (m *Machine) Facts() map[string]string {
	f := make(map[string]string, len(m.Labels)+5)
	for k, v := range m.Labels {
		f[k] = v
	}
	set := func(k, v string) {
		if v != "" {
			f[k] = v
		} else {
			delete(f, k)
		}
	}
	set("mac", m.MAC.String())
	set("uuid", strings.ToLower(m.UUID))
	set("arch", m.Arch)
	set("hostname", m.Hostname)
	if m.IP.IsValid() {
		set("ip", m.IP.String())
	} else {
		delete(f, "ip")
	}
	return f
}

// Image is a kernel or initrd to boot. Exactly one of URL and Path is set.
type Image struct {
	// Name is the image name in the iPXE script (initrd --name, and the
	// initrd=<name> kernel argument EFI needs). "" means the last element of
	// Path, Upstream or URL. An image sets one of URL, Path and Upstream.
	Name string
	// URL is an absolute http:// URL the machine fetches directly.
	URL string
	// Path is a file on the server's disk, served by HTTPHandler under the
	// machine's own URL. It comes from the inventory, never from a client.
	Path string
	// Upstream is an http:// or https:// URL the server fetches and streams
	// to the machine under the machine's own URL, for images the machine
	// cannot or should not reach itself: another network, HTTPS, a server
	// that wants credentials (see HTTPHandler.Client). Range and conditional
	// requests are passed on. Like Path it comes from the inventory, never
	// from a client, so the server is no open proxy.
	Upstream string
	// Append, with Path, is appended when the file is served: typically a
	// per-machine initrd segment (keys, host name, network configuration)
	// after a shared initrd. The file is padded with NULs to a multiple of
	// 4 bytes first, as the kernel expects archive members aligned; the
	// length served is known in advance, so Range requests work.
	Append []byte
}

// Boot is an inventory's decision for one machine.
type Boot struct {
	Profile string  // the profile's name, for logs and boot state
	Kernel  Image   // required
	Initrds []Image // in load order
	// Files are further images the machine fetches itself by URL, such as
	// a configuration named on its command line: HTTPHandler serves Path
	// and Upstream ones at <base>/m/<mac>/file/<n>.
	Files   []Image
	Args    ipxe.Args
	Message string // shown by the boot script; "" for none
	// Script, when set, replaces the generated boot script. It is executed
	// with a ScriptData.
	Script *ipxe.Template
	// Loaders maps a firmware architecture name (as pxe names it) to the
	// first-stage loader file served over TFTP, overriding the server's.
	Loaders map[string]string
	// Vars are the machine's variables, available to Script.
	Vars map[string]string
}

// ScriptData is what a profile's iPXE template sees.
type ScriptData struct {
	Machine *Machine
	Facts   map[string]string // Machine.Facts()
	Vars    map[string]string
	Spec    ipxe.BootSpec // kernel and initrd URLs as the server serves them, and the command line
	Message string
	BaseURL string // where the server's HTTP handler is reached
}

// Inventory decides what a machine boots. Boot returns an error wrapping
// ErrUnknownMachine for machines that must not boot from this server.
// Implementations are called concurrently and must answer quickly: firmware
// gives up within seconds.
type Inventory interface {
	Boot(ctx context.Context, m *Machine) (*Boot, error)
}

// InventoryFunc adapts a function to Inventory.
type InventoryFunc func(ctx context.Context, m *Machine) (*Boot, error)

// Boot calls f.
func (f InventoryFunc) Boot(ctx context.Context, m *Machine) (*Boot, error) { return f(ctx, m) }
