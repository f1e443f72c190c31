// Package initrd assembles cpio (newc) initramfs images the way the Linux
// kernel unpacks them: from directory trees, files, in-memory data,
// manifests and Nix store closures, in compressed segments, reproducibly and
// in bounded memory. It also reads any initrd back and reports what the
// kernel would do with it.
//
// # Building
//
// Entries come from [Tree] (a host directory, confined with os.Root: symlinks
// are stored, never followed), [File] (one host file at a chosen path),
// literal [Entry] values (in-memory data, device nodes, links), a
// gen_init_cpio-style manifest ([ParseManifest], [ResolveManifest]) or a Nix
// closure ([Closure], [ClosureInfo]: store paths plus the registration at
// /nix-path-registration). [Plan] turns them into one
// segment's entries in kernel order and checks every limit before anything
// is written: parents before children (missing ones created), byte-sorted
// order, duplicates an error unless [PlanOptions.LastWins], hard-link groups,
// the SOURCE_DATE_EPOCH clamp ([EpochFromEnv]) and root ownership.
// [Dedup] then stores identical files once, as hard links (store closures
// repeat many files), saving archive size and unpacked RAM. Dedup works on
// the whole entry list, so it costs the list's memory (see below).
//
// # Streaming
//
// Tree, Closure and Plan hold every entry in memory, about 200 bytes each
// (a 100 000-file tree takes about 20 MB). [PlanStream] plans the same
// segment from [Input] values ([TreeInput], [ClosureInput],
// [ClosureInfoInput], [EntriesInput]) without holding the entries: it walks
// each host tree in archive order (full-path byte order: "a", "a-c", "a/b"),
// one directory listing at a time, merges the walks with the sorted
// in-memory entries, and makes every check Plan makes, keeping only the
// segment's directory names and its hard-linked files. The returned
// [Stream] goes into [Segment].Stream; writing it walks the trees a second
// time, and a tree that changed in between fails with [ErrChanged]. The
// output is byte for byte that of Tree (or Closure) and Plan on the same
// inputs. Memory is then the directories on the walk's current path and
// the compression jobs, whatever the number of entries.
//
// [Write] and [WriteFile] write segments one after another, each compressed
// on its own ([None], [Gzip], [Zstd], [XZ] with CRC32, legacy [LZ4]), with
// inode numbers unique across all of them; typically an uncompressed
// early-microcode segment, then the compressed main one. Before writing
// anything they check that every entry's parent comes first
// ([ErrMissingParent]). [AppendFile] adds a small per-machine segment to an
// existing initrd without rewriting it. Data is streamed from its sources;
// memory is the entry list (about 200 bytes an entry; none for a
// [Stream]) plus a few compression jobs ([CompressOptions].ChunkSize),
// whatever the data size.
// bench/initrd/README.md has measured speed, size and memory. Each compressed segment is one zstd
// frame, gzip member or xz stream, because the kernel decompresses one per
// member and then insists on a record boundary. Every compression but none
// uses several cores: zstd and gzip compress fixed-size jobs inside the
// frame, xz compresses independent blocks of [DefaultXZBlockSize] (as xz
// -T0 does; our code writes the stream header, block headers, CRC32
// checks, index and footer around ulikunitz/xz's LZMA2 encoder) and lz4
// independent legacy blocks. Reading the sources can use several cores
// too ([WriteOptions].ReadAhead): one goroutine walks the inputs, others
// read small files into a 4 MiB ring, and the writer takes them in archive
// order, so a build of many small files is not bound by one goroutine's
// open, read and close calls. The output is identical whatever the number
// of cores.
//
// [Writer] is the archive/tar-shaped layer below: WriteHeader, Write, Close
// for one uncompressed segment. It uses github.com/cavaliergopher/cpio for
// the records and works around that library's traps: it patches the
// rdevmajor/rdevminor fields the library never writes, forces the "070701"
// magic and a zero check field (the library can switch every later header
// in the process to "070702"), writes symlink targets as data, assigns
// inode numbers itself and never hands the library a header it reuses.
//
// # Reading
//
// [Reader] walks the records of every segment, detecting and decompressing
// each. [Inspect] replays the kernel's unpacking rules over them and reports
// dropped entries (missing parent, name over PATH_MAX), duplicate paths,
// hard-link clashes, per-segment sizes and a warning past [IPXEWarnSize].
// Errors are [*FormatError] values naming the offset and entry.
//
// # Kernel rules followed
//
// From Documentation/driver-api/early-userspace/buffer-format.rst and
// init/initramfs.c: the buffer is a sequence of NUL-padded members, each a
// cpio archive or a compressed one; an uncompressed member starts 4-byte
// aligned; newc headers are 110 bytes of hex; names and data are padded to
// 4 bytes; file sizes are 32-bit; names of PATH_MAX bytes or more are
// skipped; parents are not created; a later duplicate wins; hard links are
// matched by (major, minor, inode, mode) until the next TRAILER!!!; device
// numbers come from rdevmajor/rdevminor.
//
// # Other systems
//
// The package builds wherever Go does, and everything but reading host
// files is the same everywhere. Reading them is fastest on Linux: the
// streaming walk lstats and opens relative to each directory's descriptor
// (fstatat, openat with O_NOFOLLOW) and [Write] reads sources with raw
// read(2) calls. Elsewhere both go through os.Root and os.File, for the
// same archive. Other Unix systems take owners, modes, device numbers and
// hard links from struct stat, as Linux does. Systems without it
// (Windows) give [Tree], [File] and the streaming walk only what
// fs.FileInfo holds: the type, the permission bits as Go reports them
// (0666 or 0444 for files, so no executable bit), the size and the time;
// owners are 0, there are no device numbers, and every name is a file of
// its own (no hard-link groups). Set modes through a manifest or [Entry]
// values where they matter. There, too, without inode numbers, a
// directory replaced during a streaming walk by a symlink that stays
// inside the tree is followed instead of failing with [ErrChanged].
//
// # Neighbours and non-goals
//
// The netboot package serves what this package builds; ipxe scripts name
// the initrds. Non-goals: the old binary and odc cpio formats, the "070702"
// checksum format on output, bzip2/lzma/lzo output, extracting archives to
// disk, and evaluating Nix expressions (a closure is given as store paths).
package initrd
