package initrd_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/initrd"
)

type readRec struct {
	rec  initrd.Record
	data []byte
}

// readAll reads every record with its data, stopping at the first error.
func readAll(in []byte) ([]readRec, error) {
	r := initrd.NewReader(bytes.NewReader(in))
	r.MaxUnpacked = 16 << 20
	var out []readRec
	for len(out) < 10000 {
		rec, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		data, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			return out, err
		}
		out = append(out, readRec{*rec, data})
	}
	return out, nil
}

func seedArchives(f *testing.F) {
	p, err := initrd.Plan([]initrd.Entry{
		reg("init", "#!/bin/sh\necho hi\n"),
		{Header: initrd.Header{Name: "dev/console", Type: initrd.TypeChar, Mode: 0o600, Devmajor: 5, Devminor: 1}},
		{Header: initrd.Header{Name: "bin/sh", Type: initrd.TypeSymlink, Mode: 0o777, Linkname: "busybox"}},
		reg("bin/busybox", "BB"),
		{Header: initrd.Header{Name: "bin/ls", Type: initrd.TypeLink, Linkname: "bin/busybox"}},
	}, initrd.PlanOptions{})
	require.NoError(f, err)
	for _, segs := range [][]initrd.Compression{{initrd.None}, {initrd.None, initrd.Gzip}, {initrd.Zstd}, {initrd.XZ}, {initrd.None, initrd.LZ4}} {
		var buf bytes.Buffer
		var ss []initrd.Segment
		for _, c := range segs {
			ss = append(ss, initrd.Segment{Compression: c, Entries: p})
		}
		_, err := initrd.Write(context.Background(), &buf, ss, initrd.WriteOptions{})
		require.NoError(f, err)
		f.Add(buf.Bytes())
	}
	f.Add([]byte("070701"))
	f.Add([]byte("\x00\x00\x00\x00070701zzzzzzzz"))
}

// FuzzReader: any input gives records or an error, never a panic; and the
// records read re-encode, through our Writer, into an archive that reads
// back the same (round trip).
func FuzzReader(f *testing.F) {
	seedArchives(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		rep, ierr := initrd.Inspect(context.Background(), bytes.NewReader(in), initrd.InspectOptions{MaxUnpacked: 16 << 20})
		require.NotNil(t, rep)
		if ierr != nil {
			var fe *initrd.FormatError
			assert.ErrorAs(t, ierr, &fe)
		}
		recs, err := readAll(in)
		if err != nil || len(recs) == 0 {
			return
		}
		var buf bytes.Buffer
		w := initrd.NewWriter(&buf)
		var kept []readRec
		for _, r := range recs {
			h := r.rec.Header
			h.Links = 0
			if h.Type == 0 || w.WriteHeader(&h) != nil {
				continue // not representable: our writer refuses it
			}
			if _, err := w.Write(r.data); err != nil {
				return // short data for a record the reader let through: nothing to compare
			}
			kept = append(kept, r)
		}
		require.NoError(t, w.Close())
		again, err := readAll(buf.Bytes())
		require.NoError(t, err)
		require.Len(t, again, len(kept))
		for i := range kept {
			a, b := kept[i].rec, again[i].rec
			assert.Equal(t, a.Name, b.Name)
			assert.Equal(t, a.Type, b.Type)
			assert.Equal(t, a.Mode, b.Mode)
			assert.Equal(t, a.Uid, b.Uid)
			assert.Equal(t, a.Linkname, b.Linkname)
			assert.Equal(t, a.Devmajor, b.Devmajor)
			assert.Equal(t, a.Devminor, b.Devminor)
			assert.Equal(t, kept[i].data, again[i].data)
		}
	})
}

// FuzzManifest: parsing never panics, and what parses formats back into a
// manifest that parses to the same entries (round trip).
func FuzzManifest(f *testing.F) {
	f.Add([]byte("# gen_init_cpio style\ndir /dev 0755 0 0\nnod /dev/console 0600 0 0 c 5 1\nslink /bin/sh busybox 0777 0 0\nfile /init init.sh 0755 0 0 /linuxrc\npipe /run/fifo 0644 0 0\nsock /run/s 0600 0 0\n"))
	f.Add([]byte("file a b 644 1 2 c d e\n"))
	f.Add([]byte("nod x 600 0 0 q 1 1\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		es, err := initrd.ParseManifest(in)
		if err != nil {
			var le *initrd.LineError
			assert.ErrorAs(t, err, &le)
			return
		}
		text, err := initrd.FormatManifest(es)
		require.NoError(t, err)
		again, err := initrd.ParseManifest(text)
		require.NoError(t, err, "%s", text)
		assert.Equal(t, es, again)
	})
}

func TestManifest(t *testing.T) {
	es, err := initrd.ParseManifest([]byte("dir /dev 755 0 0 # devices\nnod /dev/console 600 0 0 c 5 1\nfile /init /bin/true 755 0 0 /linuxrc\n"))
	require.NoError(t, err)
	require.Len(t, es, 4)
	assert.Equal(t, initrd.Header{Name: "dev/console", Type: initrd.TypeChar, Mode: 0o600, Devmajor: 5, Devminor: 1}, es[1].Header)
	assert.Equal(t, initrd.TypeLink, es[3].Type)
	assert.Equal(t, "init", es[3].Linkname)
	_, err = initrd.Plan(es, initrd.PlanOptions{})
	require.ErrorIs(t, err, initrd.ErrInvalidHeader, "unresolved file sizes are refused")
	es, err = initrd.ResolveManifest(es, "/")
	require.NoError(t, err)
	_, err = initrd.Plan(es, initrd.PlanOptions{})
	require.NoError(t, err)
	for _, bad := range []string{"dirt x 755 0 0", "dir x 75a 0 0", "dir ../x 755 0 0", "nod x 600 0 0 c 5", "dir x 17777 0 0"} {
		_, err := initrd.ParseManifest([]byte("dir ok 755 0 0\n" + bad + "\n"))
		var le *initrd.LineError
		require.ErrorAs(t, err, &le, bad)
		assert.Equal(t, 2, le.Line)
	}
}
