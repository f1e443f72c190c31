// Command ipxescript renders iPXE scripts with the ipxe package, or reads a
// NixOS netboot.ipxe and prints its boot spec.
//
//	go run ./examples/ipxescript                      # a demo boot script and menu
//	go run ./examples/ipxescript -parse netboot.ipxe  # what a NixOS netboot.ipxe boots
//	go run ./examples/ipxescript -kernel URL -initrd URL -cmdline "console=ttyS0"
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nixboot/nixboot/ipxe"
)

func main() {
	parse := flag.String("parse", "", "read this netboot.ipxe and print its boot spec")
	kernel := flag.String("kernel", "", "kernel URL for a boot script")
	initrd := flag.String("initrd", "", "initrd URL for a boot script")
	cmdline := flag.String("cmdline", "", "kernel command line for a boot script")
	flag.Parse()
	if err := run(*parse, *kernel, *initrd, *cmdline); err != nil {
		fmt.Fprintln(os.Stderr, "ipxescript:", err)
		os.Exit(1)
	}
}

func run(parse, kernel, initrd, cmdline string) error {
	switch {
	case parse != "":
		src, err := os.ReadFile(parse)
		if err != nil {
			return err
		}
		spec, err := ipxe.ParseBootSpec(src)
		if err != nil {
			return fmt.Errorf("%s: %w", parse, err)
		}
		fmt.Printf("kernel:  %s\n", spec.Kernel)
		for _, i := range spec.Initrds {
			fmt.Printf("initrd:  %s\n", i.URL)
		}
		fmt.Printf("init:    %s\n", spec.Init)
		fmt.Printf("cmdline: %s\n", spec.Args)
		return nil
	case kernel != "":
		args, err := ipxe.ParseArgs(cmdline)
		if err != nil {
			return err
		}
		spec := ipxe.BootSpec{Kernel: kernel, Args: args}
		if initrd != "" {
			spec.Initrds = []ipxe.ImageRef{{URL: initrd}}
		}
		s, err := spec.Script()
		if err != nil {
			return err
		}
		_, err = s.WriteTo(os.Stdout)
		return err
	}
	fmt.Println("# The generic first script of the chain pattern:")
	chain := &ipxe.Script{Commands: []ipxe.Command{
		ipxe.DHCP{Retries: 2},
		ipxe.Chain{URL: ipxe.MachineScriptURL("http://10.77.0.1:8080/boot.ipxe")},
	}}
	if _, err := chain.WriteTo(os.Stdout); err != nil {
		return err
	}
	fmt.Println("\n# A per-machine menu of NixOS generations, newest first:")
	menu := ipxe.BootMenu{Title: "lab1", Timeout: 5 * time.Second}
	for _, g := range []string{"3", "2", "1"} {
		menu.Entries = append(menu.Entries, ipxe.MenuEntry{
			Label: "gen" + g,
			Title: "NixOS generation " + g,
			Boot: ipxe.BootSpec{
				Kernel:  "http://10.77.0.1:8080/gen" + g + "/bzImage",
				Initrds: []ipxe.ImageRef{{URL: "http://10.77.0.1:8080/gen" + g + "/initrd"}},
				Args:    ipxe.Args{ipxe.KV("init", "/nix/store/...-nixos-system-lab1-gen"+g+"/init"), ipxe.KV("console", "ttyS0")},
			},
		})
	}
	s, err := menu.Script()
	if err != nil {
		return err
	}
	if _, err := s.WriteTo(os.Stdout); err != nil {
		return err
	}
	fmt.Println("\n# A hostile value is refused, not rendered:")
	bad := &ipxe.Script{Commands: []ipxe.Command{ipxe.Echo{Text: ipxe.Lit("hi\nshell")}}}
	_, err = bad.Render()
	fmt.Println("#", err)
	return nil
}
