package netboot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultReloadInterval is how often FileInventory.Watch looks at the file.
const DefaultReloadInterval = 2 * time.Second

// FileInventory serves a JSON inventory file (see Config) and reloads it when
// it changes, or when a profile's NixOS netboot directory is a symlink that
// now points elsewhere (a rebuilt ./result). A file that fails to load is
// rejected with an error naming the field, and the inventory loaded before
// stays in force.
//
// Call Load once before use, then run Watch (or call Reload yourself, for
// example on SIGHUP). Boot, Load and Reload are safe for concurrent use.
type FileInventory struct {
	Path     string
	Interval time.Duration // between checks in Watch; 0 means DefaultReloadInterval
	Logger   *slog.Logger  // nil discards

	mu      sync.RWMutex
	current *StaticInventory
	sum     [32]byte
}

// Load reads the file; it fails if the file is invalid, leaving the
// inventory in force (if any) unchanged.
func (fi *FileInventory) Load() error {
	_, err := fi.reload(true)
	return err
}

// Reload reads the file if its content changed or a NixOS netboot directory
// it names resolves to another target than before, and reports whether a
// new inventory took effect. On error the previous inventory stays in force.
func (fi *FileInventory) Reload() (bool, error) { return fi.reload(false) }

func (fi *FileInventory) reload(force bool) (bool, error) {
	f, err := os.Open(fi.Path)
	if err != nil {
		return false, fmt.Errorf("netboot: inventory: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	f.Close()
	if err != nil {
		return false, fmt.Errorf("netboot: inventory %s: %w", fi.Path, err)
	}
	sum := sha256.Sum256(data)
	fi.mu.RLock()
	cur, same := fi.current, fi.current != nil && bytes.Equal(sum[:], fi.sum[:])
	fi.mu.RUnlock()
	same = same && !cur.nixosMoved()
	if same && !force {
		return false, nil
	}
	c, err := ParseConfig(data)
	if err != nil {
		return false, fmt.Errorf("%s: %w", fi.Path, err)
	}
	inv, err := c.Compile()
	if err != nil {
		return false, fmt.Errorf("%s: %w", fi.Path, err)
	}
	fi.mu.Lock()
	fi.current, fi.sum = inv, sum
	fi.mu.Unlock()
	return true, nil
}

// Watch reloads the file whenever Reload would (its content changed, or a
// NixOS netboot directory link was repointed), until ctx is cancelled; it
// then returns nil. A broken file is logged (once per
// version) and ignored; the last good inventory stays in force.
func (fi *FileInventory) Watch(ctx context.Context) error {
	log := orDiscard(fi.Logger)
	t := time.NewTicker(orDefault(fi.Interval, DefaultReloadInterval))
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		changed, err := fi.Reload()
		switch {
		case err != nil && err.Error() != lastErr:
			lastErr = err.Error()
			log.Error("inventory: rejected, keeping the previous one", "file", fi.Path, "err", err)
		case err == nil && changed:
			lastErr = ""
			log.Info("inventory: reloaded", "file", fi.Path)
		case err == nil:
			lastErr = ""
		}
	}
}

// Boot answers from the inventory in force.
func (fi *FileInventory) Boot(ctx context.Context, m *Machine) (*Boot, error) {
	fi.mu.RLock()
	inv := fi.current
	fi.mu.RUnlock()
	if inv == nil {
		return nil, fmt.Errorf("%w: %s not loaded", ErrInvalidInventory, fi.Path)
	}
	return inv.Boot(ctx, m)
}
