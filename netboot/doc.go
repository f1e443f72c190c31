// Package netboot is nixboot's serving layer: TFTP and HTTP handlers, the
// machine inventory, and a Server that runs DHCP, TFTP and HTTP under one
// lifecycle.
package netboot
