// Command bootinit is the /init of the boot test's initrd: it checks what
// the kernel unpacked, prints NBI-BOOT-OK (or NBI-BOOT-FAIL with reasons)
// on the console and powers off. Built by TestBootQEMU with CGO_ENABLED=0.
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

func main() {
	var fails []string
	fail := func(f string, a ...any) { fails = append(fails, fmt.Sprintf(f, a...)) }

	var st syscall.Stat_t
	if err := syscall.Stat("/dev/nbi-null", &st); err != nil {
		fail("stat /dev/nbi-null: %v", err)
	} else if st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != (1<<8|3) {
		fail("/dev/nbi-null mode %o rdev %#x, want char 1:3", st.Mode, st.Rdev)
	}
	if err := syscall.Stat("/dev/nbi-blk", &st); err != nil {
		fail("stat /dev/nbi-blk: %v", err)
	} else if st.Mode&syscall.S_IFMT != syscall.S_IFBLK || st.Rdev != (259<<8|0x12345&0xff|(0x12345&^0xff)<<12) {
		fail("/dev/nbi-blk mode %o rdev %#x, want block 259:74565", st.Mode, st.Rdev)
	}
	if t, err := os.Readlink("/bin/nbi-link"); err != nil || t != "../etc/data" {
		fail("symlink /bin/nbi-link -> %q, %v", t, err)
	}
	if b, err := os.ReadFile("/bin/nbi-link"); err != nil || string(b) != "payload\n" {
		fail("through symlink: %q %v", b, err)
	}
	var a, b syscall.Stat_t
	e1, e2 := syscall.Stat("/etc/data", &a), syscall.Stat("/etc/data-hardlink", &b)
	if e1 != nil || e2 != nil || a.Ino != b.Ino || a.Nlink != 2 {
		fail("hard link: %v %v ino %d/%d nlink %d", e1, e2, a.Ino, b.Ino, a.Nlink)
	}
	var da, db syscall.Stat_t
	e1, e2 = syscall.Stat("/etc/dup-a", &da), syscall.Stat("/etc/dup-b", &db)
	if e1 != nil || e2 != nil || da.Ino != db.Ino || da.Nlink != 2 {
		fail("deduplicated files: %v %v ino %d/%d nlink %d", e1, e2, da.Ino, db.Ino, da.Nlink)
	}
	if d, err := os.ReadFile("/etc/dup-b"); err != nil || string(d) != strings.Repeat("dedup\n", 1000) {
		fail("deduplicated file content: %d bytes, %v", len(d), err)
	}
	if h, err := os.ReadFile("/etc/hostname"); err != nil || string(h) != "nbi-machine\n" {
		fail("appended segment: %q %v", h, err)
	}
	if big, err := os.ReadFile("/etc/big"); err != nil || len(big) != 1<<20+3 || big[1<<20] != byte((1<<20)%251) {
		fail("big file: len %d %v", len(big), err)
	}
	// The xz segment, many blocks: every one must have been decoded.
	xzData, err1 := os.ReadFile("/etc/xz-data")
	xzSum, err2 := os.ReadFile("/etc/xz-data.sha256")
	if err1 != nil || err2 != nil || fmt.Sprintf("%x", sha256.Sum256(xzData)) != string(xzSum) {
		fail("xz segment: %d bytes, sha256 %x, want %s (%v, %v)", len(xzData), sha256.Sum256(xzData), xzSum, err1, err2)
	}
	top, err := os.ReadFile("/etc/toplevel")
	if err != nil {
		fail("toplevel: %v", err)
	} else {
		cmd := exec.Command(strings.TrimSpace(string(top)) + "/init")
		cmd.Stdin = os.Stdin // there is no /dev/null for os/exec to open
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "NBI-NIX-MARKER") {
			fail("store init: %q %v", out, err)
		}
	}
	if _, err := os.Stat("/nix-path-registration"); err != nil {
		fail("registration: %v", err)
	}
	if len(fails) == 0 {
		fmt.Println("NBI-BOOT-OK")
	} else {
		fmt.Println("NBI-BOOT-FAIL: " + strings.Join(fails, "; "))
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
