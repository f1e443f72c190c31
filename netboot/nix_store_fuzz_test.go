package netboot

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParseRegistration: no panic on any input, and what parses can be
// written back in --dump-db form and parses to the same paths.
func FuzzParseRegistration(f *testing.F) {
	f.Add("/nix/store/mbb6b5q23q5by5s8gamc1cnlr4hh6kgr-busybox\n" + strings.Repeat("a", 64) + "\n10\n\n0\n")
	f.Add("/nix/store/yigaqmbb6b5q23q5by5s8gamc1cnlr4h-toplevel\nsha256:0c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5qaaaaaaaaaaaaaaaaaaaa\n808\n/nix/store/mbb6b5q23q5by5s8gamc1cnlr4hh6kgr-x.drv\n1\n/nix/store/mbb6b5q23q5by5s8gamc1cnlr4hh6kgr-busybox\n")
	f.Fuzz(func(t *testing.T, s string) {
		infos, err := ParseRegistration(strings.NewReader(s))
		if err != nil {
			return
		}
		var b strings.Builder
		for _, p := range infos {
			fmt.Fprintf(&b, "%s\n%s\n%d\n%s\n%d\n", p.Path, p.NarHash, p.NarSize, p.Deriver, len(p.References))
			for _, r := range p.References {
				b.WriteString(r + "\n")
			}
		}
		again, err := ParseRegistration(strings.NewReader(b.String()))
		require.NoError(t, err, b.String())
		require.Equal(t, infos, again)
	})
}
