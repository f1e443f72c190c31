package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixboot/nixboot/disk"
	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func hashOf(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

func TestDiskplan(t *testing.T) {
	testenv.Command(t, "mkfs.ext4")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, 256<<20))
	layout := filepath.Join(dir, "layout.json")
	require.NoError(t, os.WriteFile(layout, []byte(`{"seed":"diskplan","partitions":[
		{"name":"ESP","type":"esp","size":"64MiB","filesystem":{"type":"vfat","label":"ESP"}},
		{"name":"root","type":"root-x86-64","size":"rest","filesystem":{"type":"ext4","label":"nixos"}}]}`), 0o644))
	ctx := context.Background()
	sh := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, args, &out, &errOut)
		return out.String(), err
	}

	before := hashOf(t, img)
	out, err := sh("-layout", layout, "-disk", img)
	require.NoError(t, err)
	assert.Contains(t, out, `create        1 "ESP"`)
	out, err = sh("-layout", layout, "-disk", img, "-json", "plan")
	require.NoError(t, err)
	var plan disk.Plan
	require.NoError(t, json.Unmarshal([]byte(out), &plan))
	assert.Len(t, plan.Partitions, 2)
	_, err = sh("-layout", layout, "-disk", img, "apply")
	require.ErrorContains(t, err, "-yes")
	assert.Equal(t, before, hashOf(t, img), "plan and apply without -yes must not write")

	out, err = sh("-layout", layout, "-disk", img, "apply", "-yes")
	require.NoError(t, err)
	assert.Contains(t, out, "applied")
	out, err = sh("-layout", layout, "-disk", img)
	require.NoError(t, err)
	assert.Contains(t, out, "nothing to do")
	out, err = sh("-disk", img, "inspect")
	require.NoError(t, err)
	assert.Contains(t, out, `2 "root" root-x86-64 at 65MiB`)

	// A destructive change is refused and shown.
	require.NoError(t, os.WriteFile(layout, []byte(`{"partitions":[{"name":"ESP","type":"linux","size":"64MiB"}]}`), 0o644))
	after := hashOf(t, img)
	out, err = sh("-layout", layout, "-disk", img, "apply", "-yes")
	require.ErrorIs(t, err, disk.ErrRefused)
	assert.Contains(t, out, "LOSES partition 1")
	assert.Equal(t, after, hashOf(t, img))

	_, err = sh("-layout", layout, "-disk", img, "frobnicate")
	require.ErrorIs(t, err, errUsage)
}
