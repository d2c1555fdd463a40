package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

var quiet = slog.New(slog.DiscardHandler)

func TestEachStoreChoiceOpens(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	tests := []struct {
		name string
		cfg  config
		want string
	}{
		{"no configuration runs an embedded Redis", config{store: "redis"}, "Redis (embedded miniredis)"},
		{"REDIS_URL uses that server", config{store: "redis", redisURL: "redis://" + mr.Addr() + "/0"}, "Redis at " + mr.Addr()},
		{"-store=memory uses a MemoryStore", config{store: "memory"}, "MemoryStore"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := openStore(context.Background(), tt.cfg, quiet)
			if err != nil {
				t.Fatal(err)
			}
			defer st.close()
			if st.name != tt.want {
				t.Errorf("store %q, want %q", st.name, tt.want)
			}
		})
	}
}

func TestBadStoreChoicesAreExplained(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  config
		want string
	}{
		{"an unknown store", config{store: "postgres"}, "want redis or memory"},
		{"a REDIS_URL that does not parse", config{store: "redis", redisURL: "http://nope"}, "REDIS_URL"},
		{"a Redis that does not answer", config{store: "redis", redisURL: "redis://127.0.0.1:1/0"}, "unset REDIS_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, err := openStore(context.Background(), tt.cfg, quiet)
			if err == nil {
				st.close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestTheSecretComesFromTheEnvironmentOrIsMadeUpLoudly(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	made, err := sessionSecret("", &out)
	if err != nil || len(made) < 32 || !strings.Contains(out.String(), "SESSION_SECRET is not set") {
		t.Errorf("no SESSION_SECRET: %d bytes, %v, said %q", len(made), err, out.String())
	}
	given := strings.Repeat("s", 32)
	if got, err := sessionSecret(given, io.Discard); err != nil || string(got) != given {
		t.Errorf("SESSION_SECRET of 32 bytes: %q, %v", got, err)
	}
	if _, err := sessionSecret("short", io.Discard); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("a short SESSION_SECRET: %v", err)
	}
}

// lockedBuilder collects what run prints while the test reads it.
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

func TestRunServesOnLocalhostAndStopsWhenAsked(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuilder
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{addr: "127.0.0.1:0", store: "redis", secret: strings.Repeat("k", 32)}, &out, quiet)
	}()

	url := regexp.MustCompile(`open (http://localhost:\d+)`)
	var base string
	for deadline := time.Now().Add(10 * time.Second); base == "" && time.Now().Before(deadline); {
		if m := url.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before serving: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if base == "" {
		t.Fatalf("no URL printed: %q", out.String())
	}
	res, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || len(res.Cookies()) != 1 || res.Cookies()[0].Name != "__Host-session" {
		t.Errorf("GET /: status %d, cookies %v", res.StatusCode, res.Cookies())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop within 10s")
	}
	if !strings.Contains(out.String(), "stopped") {
		t.Errorf("run did not say it stopped: %q", out.String())
	}
}
