// Package ipxe models, renders and parses iPXE scripts.
//
// An iPXE script is what nixboot hands most machines after the firmware's
// first DHCP exchange, so it must be correct by construction: a value that
// comes from an inventory or a request (a host name, a kernel argument, a
// URL) must never be able to add a command, cut a line short with a comment,
// or make iPXE expand a setting nobody meant to expand.
//
// # Model and rendering
//
// A [Script] is a list of [Command] values: [Kernel], [Initrd], [Imgargs],
// [Boot], [Chain], [DHCP] (with bounded retries), [Set], [Isset], [Goto],
// [Label], [Echo], [Sleep], [Menu], [Item], [Choose], [Imgverify] and
// [Comment]. [Raw] is the one explicit way to write a line the model does
// not cover. [Script.Render] validates every field and fails with a
// [*FieldError] naming the command and field; it never writes a partial or
// altered script.
//
// Text in a script is a [Value]: literal text ([Lit]) and typed setting
// expansions ([Setting], such as [MAC], [UUID], [BuildArch], [Net0IP]),
// combined with [Expr]. A "${" inside literal text is an error, as are line
// breaks, NUL and other control characters, a word starting with '#' (iPXE
// reads it as a comment) and the words "||", "&&" and ";" (command
// separators). iPXE splits lines on whitespace without quoting and joins
// arguments again with single spaces, so where a value is one argument it
// may hold no whitespace, and where it is a run of words only single spaces
// survive.
//
// Kernel command lines are [Args]: ordered [Arg] values rendered with the
// kernel's double-quote rule, so "msg=a b" reaches the kernel as one
// argument. Values that hold setting expansions are always quoted, because
// iPXE expands settings after it splits the line.
//
// [BootSpec] is the plain-data form of a boot (kernel, initrds, command
// line); [BootSpec.Script] renders it, naming each initrd and adding the
// initrd=<name> argument that iPXE's EFI build needs to pass the initrd to
// the kernel's EFI stub. [BootMenu] renders a menu of boot choices (NixOS
// generations, newest first and default, with a timeout), and
// [MachineScriptURL] builds the chain pattern's per-machine script URL.
//
// # Templates
//
// [ParseTemplate] gives callers their own text/template scripts with the
// same guarantees: every action is validated as a single safe word unless it
// goes through a function that validates for its place ({{words}},
// {{arg}}, {{args}}, {{cmdline}}, {{setting}}, {{boot}}).
//
// # Parsing
//
// [Parse] reads the subset of iPXE that NixOS's netboot.ipxe and similar
// builders emit, and everything Script renders, the way iPXE reads lines
// (CR stripping, backslash continuations, labels, comments, "||", "&&").
// Unknown commands and unsupported forms are errors naming the line
// ([*LineError]), never dropped. [ParseBootSpec] extracts the kernel,
// initrds, command line and init= path. The parser is pure and bounded
// ([MaxScriptSize], [MaxLines]) and never fetches anything: resolving
// relative URLs against the script's own URL is the caller's job.
//
// # Neighbours
//
// The netboot package serves rendered scripts over HTTP and TFTP, using
// this package to render per-machine scripts from its inventory and to read
// NixOS netboot directories. This package imports no other nixboot package.
// The command syntax follows iPXE's documented commands
// (https://ipxe.org/cmd) and its script reader.
//
// Non-goals: executing scripts, expanding settings, and the full iPXE
// language (iseq, ifopen, params, login, sanboot and so on): use [Raw] to
// write those, knowing they bypass the model.
package ipxe
