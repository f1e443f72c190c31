// Package initrd assembles cpio (newc) initramfs images the way the Linux
// kernel unpacks them: from directory trees, files, manifests and Nix store
// closures, in compressed segments, reproducibly and in bounded memory.
package initrd
