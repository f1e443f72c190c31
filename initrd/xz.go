package initrd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// DefaultXZBlockSize is the uncompressed size of each xz block when
// CompressOptions.ChunkSize is 0. Blocks are compressed independently (each
// starts with a dictionary reset), so smaller blocks lose a little ratio:
// on the 176 MB cpio of bench/initrd's tree, 1 MiB blocks came out 0.6 %
// larger than one block with an 8 MiB dictionary, 2 MiB blocks 0.24 %.
// Each worker's encoder takes about nine times the block size (dictionary,
// match chains, hash table): with 1 MiB blocks mkinitrd peaked at 58 MiB
// with two workers, with 2 MiB blocks at 70 MiB.
const DefaultXZBlockSize = 1 << 20

// xzMaxDict is the largest dictionary used, the xz package's default and
// what xz -6 uses.
const xzMaxDict = 8 << 20

// The xz container (https://tukaani.org/xz/xz-file-format.txt): a stream
// header, blocks, an index and a stream footer. Only the LZMA2 filter and
// the CRC32 check are written; the kernel's xz decoder verifies CRC32 (or
// none) and rejects CRC64 and SHA-256 unless built with them.
const xzCheckCRC32 = 0x01

// xzStreamHeader returns the 12-byte stream header with the CRC32 check.
func xzStreamHeader() []byte {
	h := []byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 0x00, xzCheckCRC32}
	return binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(h[6:8]))
}

// xzBlockHeader returns the 12-byte header of a block with one LZMA2 filter
// and neither size present (the sizes are in the index), as
// github.com/ulikunitz/xz and xz-utils write it.
func xzBlockHeader(dictCap int) []byte {
	// size byte ((12/4)-1), block flags (one filter, no sizes), filter
	// flags (LZMA2, one property byte: the dictionary size), padding.
	h := []byte{2, 0x00, 0x21, 0x01, lzma.EncodeDictCap(int64(dictCap)), 0, 0, 0}
	return binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(h))
}

// xzRecord is one block's index record.
type xzRecord struct{ unpadded, uncompressed int64 }

// xzIndexAndFooter returns the index for records and the stream footer.
func xzIndexAndFooter(records []xzRecord) []byte {
	b := []byte{0x00}
	b = binary.AppendUvarint(b, uint64(len(records)))
	for _, r := range records {
		b = binary.AppendUvarint(b, uint64(r.unpadded))
		b = binary.AppendUvarint(b, uint64(r.uncompressed))
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	indexSize := len(b)
	// Footer: CRC32 of backward size and flags, backward size
	// (index size / 4 - 1), the header's flags, magic.
	f := binary.LittleEndian.AppendUint32(make([]byte, 4, 12), uint32(indexSize/4-1))
	f = append(f, 0x00, xzCheckCRC32, 'Y', 'Z')
	binary.LittleEndian.PutUint32(f, crc32.ChecksumIEEE(f[4:10]))
	return append(b, f...)
}

// newXZ returns a compressor writing one xz stream whose blocks of
// blockSize uncompressed bytes are compressed on workers goroutines. Each
// block gets a fresh LZMA2 encoder, so its bytes depend only on its input
// and blockSize; the stream is byte for byte what
// xz.WriterConfig{BlockSize: blockSize, DictCap: min(blockSize, 8 MiB),
// CheckSum: xz.CRC32} writes sequentially.
func newXZ(w io.Writer, blockSize, workers int) (*chunker, error) {
	dict := min(max(blockSize, lzma.MinDictCap), xzMaxDict)
	cfg := lzma.Writer2Config{DictCap: dict}
	if err := cfg.Verify(); err != nil {
		return nil, fmt.Errorf("initrd: xz: %w", err)
	}
	bh := xzBlockHeader(dict)
	var records []xzRecord // appended to by the output goroutine, in order
	compress := func(dst, src []byte) ([]byte, int64, error) {
		buf := bytes.NewBuffer(append(dst[:0], bh...))
		lw, err := cfg.NewWriter2(buf)
		if err != nil {
			return nil, 0, err
		}
		if _, err := lw.Write(src); err != nil {
			return nil, 0, err
		}
		if err := lw.Close(); err != nil {
			return nil, 0, err
		}
		out := buf.Bytes()
		unpadded := int64(len(out)) + crc32.Size
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
		out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(src))
		return out, unpadded, nil
	}
	return newChunker(w, blockSize, workers, chunkCodec{
		header:   xzStreamHeader(),
		compress: compress,
		written: func(in int, unpadded int64) {
			records = append(records, xzRecord{unpadded: unpadded, uncompressed: int64(in)})
		},
		// Close calls finish after the output goroutine ended.
		finish: func() error {
			_, err := w.Write(xzIndexAndFooter(records))
			return err
		},
		// As xz.Writer: an empty input is one empty block.
		emptyChunk: true,
	}), nil
}
