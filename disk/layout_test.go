package disk

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		err  string
	}{
		{in: "4096", want: 4096},
		{in: "512MiB", want: 512 * MiB},
		{in: "8G", want: 8 * GiB},
		{in: "1gb", want: 1e9},
		{in: " 2 TiB ", want: 2 * TiB},
		{in: "", err: "whole number"},
		{in: "1.5G", err: "unknown unit"},
		{in: "12XB", err: "unknown unit"},
		{in: "99999999999999999999", err: "too large"},
		{in: "20000000P", err: "overflows"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseByteSize(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			back, err := ParseByteSize(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, back)
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in, canon string
		want      Size
		err       string
	}{
		{in: "512MiB", canon: "512MiB", want: Fixed(512 * MiB)},
		{in: "1048576", canon: "1MiB", want: Fixed(MiB)},
		{in: "25%", canon: "25%", want: Percent(25)},
		{in: "4G..100G", canon: "4GiB..100GiB", want: Range(4*GiB, 100*GiB)},
		{in: "4GiB..", canon: "4GiB..", want: Range(4*GiB, 0)},
		{in: "REST", canon: "rest", want: Rest()},
		{in: "0", err: "zero"},
		{in: "0%", err: "1 to 100"},
		{in: "101%", err: "1 to 100"},
		{in: "2G..1G", err: "below minimum"},
		{in: "..", err: "range minimum"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.canon, got.String())
		})
	}
}

func TestParseLayout(t *testing.T) {
	full, err := os.ReadFile("testdata/layout-full.json")
	require.NoError(t, err)
	l, err := ParseLayout(bytes.NewReader(full))
	require.NoError(t, err)
	require.Len(t, l.Partitions, 4)
	assert.Equal(t, 8*GiB, l.Target.Rule.MinSize)
	assert.Equal(t, Range(4*GiB, 100*GiB), l.Partitions[2].Size)
	assert.Equal(t, Attributes(1<<59|1<<48), l.Partitions[2].Attributes)
	assert.Equal(t, "1234-ABCD", l.Partitions[0].Filesystem.UUID)

	// Each broken layout is refused with an error naming the field.
	for _, tc := range []struct{ name, json, want string }{
		{"unknown field", `{"partitions":[{"name":"a","type":"linux","size":"rest","sise":1}]}`, `unknown field "sise"`},
		{"wrong json type", `{"partitions":[{"name":"a","type":"linux","size":5}]}`, "partitions.size"},
		{"bad size", `{"partitions":[{"name":"a","type":"linux","size":"5XB"}]}`, "partitions[0].size"},
		{"bad type", `{"partitions":[{"name":"a","type":"rooot","size":"rest"}]}`, "partitions[0].type"},
		{"no name", `{"partitions":[{"type":"linux","size":"rest"}]}`, "partitions[0].name"},
		{"long name", `{"partitions":[{"name":"` + strings.Repeat("n", 37) + `","type":"linux","size":"rest"}]}`, "partitions[0].name"},
		{"dup name", `{"partitions":[{"name":"a","type":"linux","size":"1G"},{"name":"a","type":"linux","size":"rest"}]}`, "partitions[1].name"},
		{"two rests", `{"partitions":[{"name":"a","type":"linux","size":"rest"},{"name":"b","type":"linux","size":"rest"}]}`, "partitions[1].size"},
		{"rest and open range", `{"partitions":[{"name":"a","type":"linux","size":"1G.."},{"name":"b","type":"linux","size":"rest"}]}`, "partitions[1].size"},
		{"bad guid", `{"partitions":[{"name":"a","type":"linux","size":"rest","guid":"xyz"}]}`, "partitions[0].guid"},
		{"bad fs", `{"partitions":[{"name":"a","type":"linux","size":"rest","filesystem":{"type":"ntfs"}}]}`, "partitions[0].filesystem.type"},
		{"long fat label", `{"partitions":[{"name":"a","type":"esp","size":"rest","filesystem":{"type":"vfat","label":"TWELVE-CHARS"}}]}`, "partitions[0].filesystem.label"},
		{"fat label character", `{"partitions":[{"name":"a","type":"esp","size":"rest","filesystem":{"type":"vfat","label":"EFI.BOOT"}}]}`, `partitions[0].filesystem.label: "EFI.BOOT": a FAT label cannot contain '.'`},
		{"fat label blank", `{"partitions":[{"name":"a","type":"esp","size":"rest","filesystem":{"type":"vfat","label":" ESP"}}]}`, "cannot start or end with a blank"},
		{"fat label no name", `{"partitions":[{"name":"a","type":"esp","size":"rest","filesystem":{"type":"vfat","label":"NO NAME"}}]}`, "leave the label empty"},
		{"bad fat serial", `{"partitions":[{"name":"a","type":"esp","size":"rest","filesystem":{"type":"vfat","uuid":"1234"}}]}`, "partitions[0].filesystem.uuid"},
		{"bad attribute", `{"partitions":[{"name":"a","type":"linux","size":"rest","attributes":["sticky"]}]}`, `"sticky"`},
		{"attribute bit", `{"partitions":[{"name":"a","type":"linux","size":"rest","attributes":[64]}]}`, "64"},
		{"no partitions", `{"partitions":[]}`, "field partitions"},
		{"two targets", `{"target":{"path":"/dev/sda","id":"x"},"partitions":[{"name":"a","type":"linux","size":"rest"}]}`, "field target"},
		{"target id path", `{"target":{"id":"../sda"},"partitions":[{"name":"a","type":"linux","size":"rest"}]}`, "target.id"},
		{"alignment", `{"alignment":"3000","partitions":[{"name":"a","type":"linux","size":"rest"}]}`, "field alignment"},
		{"table", `{"table":"apm","partitions":[{"name":"a","type":"linux","size":"rest"}]}`, "field table"},
		{"trailing", `{"partitions":[{"name":"a","type":"linux","size":"rest"}]} {}`, "trailing"},
		{"not json", `partitions:`, "invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseLayout(strings.NewReader(tc.json))
			require.ErrorIs(t, err, ErrLayout)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

// TestLayoutJSONRoundTrip checks marshal -> parse gives the same layout.
func TestLayoutJSONRoundTrip(t *testing.T) {
	for _, name := range []string{"testdata/layout-full.json", "testdata/layout-small.json"} {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(name)
			require.NoError(t, err)
			l, err := ParseLayout(bytes.NewReader(src))
			require.NoError(t, err)
			out, err := json.Marshal(l)
			require.NoError(t, err)
			back, err := ParseLayout(bytes.NewReader(out))
			require.NoError(t, err, "%s", out)
			assert.Equal(t, l, back)
		})
	}
}

// FuzzParseLayout: whatever parses must marshal and parse back to an equal
// layout, and parse errors always wrap ErrLayout.
func FuzzParseLayout(f *testing.F) {
	for _, name := range []string{"testdata/layout-full.json", "testdata/layout-small.json"} {
		b, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte(`{"partitions":[{"name":"a","type":"linux","size":"1G..2G","attributes":[0,63]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLayout(bytes.NewReader(b))
		if err != nil {
			require.ErrorIs(t, err, ErrLayout)
			return
		}
		out, err := json.Marshal(l)
		require.NoError(t, err)
		back, err := ParseLayout(bytes.NewReader(out))
		require.NoError(t, err, "%s", out)
		assert.Equal(t, l, back)
	})
}
