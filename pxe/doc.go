// Package pxe answers DHCP for network boot: it classifies clients
// (firmware architecture, iPXE, UEFI HTTP boot), decides what each boots,
// builds full-DHCP and proxyDHCP replies, serves them, and renders pxelinux
// configuration with its file lookup order.
package pxe
