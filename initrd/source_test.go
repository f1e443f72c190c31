//go:build unix

package initrd_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/initrd"
)

// A source file replaced by a FIFO after planning fails the write with
// ErrChanged naming the entry, at once: opening a FIFO for reading would
// otherwise wait for a writer that never comes.
func TestSourceReplacedByFIFO(t *testing.T) {
	for _, tc := range []struct {
		name string
		plan func(t *testing.T, root string) initrd.Segment
	}{
		{"tree", func(t *testing.T, root string) initrd.Segment {
			entries, err := initrd.Tree(root, "")
			require.NoError(t, err)
			planned, err := initrd.Plan(entries, initrd.PlanOptions{})
			require.NoError(t, err)
			return initrd.Segment{Entries: planned}
		}},
		{"file", func(t *testing.T, root string) initrd.Segment {
			e, err := initrd.File(filepath.Join(root, "d", "f"), "d/f")
			require.NoError(t, err)
			planned, err := initrd.Plan([]initrd.Entry{e}, initrd.PlanOptions{})
			require.NoError(t, err)
			return initrd.Segment{Entries: planned}
		}},
		{"stream", func(t *testing.T, root string) initrd.Segment {
			st, err := initrd.PlanStream([]initrd.Input{initrd.TreeInput(root, "")}, initrd.PlanOptions{})
			require.NoError(t, err)
			return initrd.Segment{Stream: st}
		}},
	} {
		for _, ahead := range readAheads {
			t.Run(fmt.Sprintf("%s/read-ahead %d", tc.name, ahead), func(t *testing.T) {
				root := t.TempDir()
				f := filepath.Join(root, "d", "f")
				require.NoError(t, os.MkdirAll(filepath.Dir(f), 0o755))
				require.NoError(t, os.WriteFile(f, []byte("contents"), 0o644))
				seg := tc.plan(t, root)
				require.NoError(t, os.Remove(f))
				require.NoError(t, unix.Mkfifo(f, 0o644))

				done := make(chan error, 1)
				go func() {
					_, err := initrd.Write(context.Background(), &bytes.Buffer{}, []initrd.Segment{seg}, initrd.WriteOptions{ReadAhead: ahead})
					done <- err
				}()
				var err error
				select {
				case err = <-done:
				case <-time.After(20 * time.Second):
					// Unblock the open so the goroutine ends with the test.
					if w, oerr := os.OpenFile(f, os.O_WRONLY|unix.O_NONBLOCK, 0); oerr == nil {
						w.Close()
					}
					t.Fatal("Write still blocked on the FIFO after 20 s")
				}
				require.ErrorIs(t, err, initrd.ErrChanged)
				var ee *initrd.EntryError
				require.ErrorAs(t, err, &ee)
				assert.Contains(t, []string{"d/f", "d"}, ee.Name, "the entry or (streaming) its directory")
			})
		}
	}
}
