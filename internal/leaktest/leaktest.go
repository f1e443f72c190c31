// Package leaktest lets a test check that the goroutines an API started
// have ended once it returned.
package leaktest

import (
	"runtime"
	"testing"
	"time"
)

// Wait waits up to 5 s until no more goroutines run than before (a count
// the test took with runtime.NumGoroutine before starting the work), and
// fails the test with every goroutine's stack otherwise. The wait lets
// goroutines that are already ending, the runtime's among them, finish.
func Wait(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines still running, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
