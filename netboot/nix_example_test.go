package netboot_test

import (
	"context"
	"fmt"
	"os"

	"github.com/nixboot/nixboot/ipxe"
	"github.com/nixboot/nixboot/netboot"
	"github.com/nixboot/nixboot/pxe"
)

// GenerationBoot turns a list of generations into boot menus, newest
// first and default. Real deployments read them with SystemProfile.
func ExampleGenerationBoot() {
	top := func(h string) string { return "/nix/store/" + h + "-nixos-system-lab" }
	gens := []netboot.Generation{
		{Number: 12, Toplevel: top("1c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q"), Args: ipxe.Args{ipxe.KV("init", top("1c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q")+"/init")}},
		{Number: 11, Toplevel: top("0c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q"), Args: ipxe.Args{ipxe.KV("init", top("0c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q")+"/init")}},
	}
	g := &netboot.GenerationBoot{
		Generations: netboot.GenerationsFunc(func(context.Context) ([]netboot.Generation, error) { return gens, nil }),
		BaseURL:     "http://10.0.0.1:8080",
		PXELinuxUI:  "-", // no menu module: boot the newest at once
		Args:        ipxe.Args{ipxe.KV("console", "ttyS0")},
	}
	c, err := g.PXELinuxMenu(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := pxe.RenderPXELinux(c)
	if err != nil {
		fmt.Println(err)
		return
	}
	os.Stdout.Write(b)
	// Output:
	// DEFAULT gen12
	// PROMPT 0
	// MENU TITLE NixOS
	//
	// LABEL gen12
	//   MENU LABEL NixOS generation 12 (nixos-system-lab)
	//   KERNEL http://10.0.0.1:8080/nixos/12/kernel
	//   INITRD http://10.0.0.1:8080/nixos/12/initrd
	//   APPEND init=/nix/store/1c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-nixos-system-lab/init console=ttyS0
	//
	// LABEL gen11
	//   MENU LABEL NixOS generation 11 (nixos-system-lab)
	//   KERNEL http://10.0.0.1:8080/nixos/11/kernel
	//   INITRD http://10.0.0.1:8080/nixos/11/initrd
	//   APPEND init=/nix/store/0c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-nixos-system-lab/init console=ttyS0
}
