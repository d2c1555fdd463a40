package demotest

import (
	"context"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuilder collects what the demo prints while the test reads it.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Serve calls run (the demo's Run, with its configuration bound) in a
// goroutine and waits up to 10s for it to print the URL to open. It returns
// that URL, what run has printed so far, and a func that cancels run's
// context and returns run's result (failing the test if run does not return
// within 10s). The context is also cancelled when the test ends.
func Serve(t testing.TB, run func(ctx context.Context, out io.Writer) error) (base string, printed func() string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out := new(lockedBuilder)
	done := make(chan error, 1)
	go func() { done <- run(ctx, out) }()
	stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("run did not stop within 10s")
			return nil
		}
	}

	url := regexp.MustCompile(`open (http://localhost:\d+)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if m := url.FindStringSubmatch(out.String()); m != nil {
			return m[1], out.String, stop
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before serving: %v\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no URL printed: %q", out.String())
	return "", nil, nil
}
