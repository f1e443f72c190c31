package pxe

import "errors"

// Sentinel errors. Functions wrap them with %w and name the thing involved
// (a MAC, a file, an option), so test them with errors.Is.
var (
	// ErrNotRequest means a packet is not a BOOTREQUEST (op 1) and must not
	// be answered.
	ErrNotRequest = errors.New("pxe: not a BOOTREQUEST")
	// ErrNoMessageType means a DHCP packet lacks option 53.
	ErrNoMessageType = errors.New("pxe: no DHCP message type (option 53)")
	// ErrBadOption means an option's value does not have the shape its
	// specification requires (for example option 94 that is not 3 bytes).
	ErrBadOption = errors.New("pxe: malformed option")
	// ErrBootFileTooLong means a boot file name does not fit the 127-byte
	// BOOTP file field; we refuse rather than truncate it.
	ErrBootFileTooLong = errors.New("pxe: boot file name longer than 127 bytes")
	// ErrReplyTooLarge means a reply would exceed the client's maximum DHCP
	// message size (option 57, or 576 bytes without it).
	ErrReplyTooLarge = errors.New("pxe: reply larger than the client accepts")
	// ErrNoBoot means the policy has nothing for this client to boot; the
	// server then sends no boot information (and in proxy mode no reply).
	ErrNoBoot = errors.New("pxe: nothing to boot for this client")
	// ErrIgnore, returned by a policy, means the client gets no reply at
	// all: in full mode not even an address. It is an allow-list decided
	// at run time (say, by an inventory that ignores unknown machines). It
	// applies to network-boot clients, the only ones a policy is asked
	// about; plain DHCP clients are answered as usual.
	ErrIgnore = errors.New("pxe: client ignored")
	// ErrPoolExhausted means no address is free for a new client.
	ErrPoolExhausted = errors.New("pxe: address pool exhausted")
	// ErrLeaseFile means the lease file cannot be used: it is corrupt or was
	// written by an incompatible version. It is never overwritten.
	ErrLeaseFile = errors.New("pxe: unusable lease file")
	// ErrConfig means a Server or Network field has an invalid value.
	ErrConfig = errors.New("pxe: invalid configuration")
	// ErrBadValue means a value rendered into a pxelinux configuration
	// contains a line break or another character that would change its
	// meaning.
	ErrBadValue = errors.New("pxe: invalid value for pxelinux configuration")
)
