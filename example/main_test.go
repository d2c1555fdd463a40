package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
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
		{"-fallback puts a FallbackStore in front", config{store: "redis", fallback: true}, "Redis (embedded miniredis) behind a FallbackStore"},
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
			if (st.healthy != nil) != tt.cfg.fallback {
				t.Errorf("health check present: %v, want %v", st.healthy != nil, tt.cfg.fallback)
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
		{"fallback without Redis", config{store: "memory", fallback: true}, "does not go with -store=memory"},
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

// startRun runs the demo with cfg on a free loopback port and returns the
// URL it prints, what it prints, and a func that stops it and returns run's
// result.
func startRun(t *testing.T, cfg config) (base string, out *lockedBuilder, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg.addr, cfg.secret = "127.0.0.1:0", strings.Repeat("k", 32)
	out = new(lockedBuilder)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, out, quiet) }()
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
			return m[1], out, stop
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before serving: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no URL printed: %q", out.String())
	return "", nil, nil
}

func TestRunServesOnLocalhostAndStopsWhenAsked(t *testing.T) {
	t.Parallel()
	base, out, stop := startRun(t, config{store: "redis"})
	res, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || len(res.Cookies()) != 1 || res.Cookies()[0].Name != "__Host-session" {
		t.Errorf("GET /: status %d, cookies %v", res.StatusCode, res.Cookies())
	}

	if err := stop(); err != nil {
		t.Errorf("run after cancel: %v", err)
	}
	if !strings.Contains(out.String(), "stopped") {
		t.Errorf("run did not say it stopped: %q", out.String())
	}
}

func TestTheOutageButtonShowsTheFallbackStoreAtWork(t *testing.T) {
	t.Parallel()
	// Insecure: Go's cookie jar sends no Secure cookie over http://localhost.
	base, _, stop := startRun(t, config{store: "redis", fallback: true, insecure: true})
	defer stop()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	page := func(method, path string, form url.Values) string {
		t.Helper()
		res, err := c.PostForm(base+path, form)
		if method == "GET" {
			res, err = c.Get(base + path)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, body)
		}
		return string(body)
	}

	page("GET", "/", nil)
	if down := page("POST", "/demo/redis", url.Values{"redis": {"stop"}}); !strings.Contains(down, `id="degraded"`) {
		t.Fatalf("with Redis stopped the page does not say Redis is not answering:\n%s", down)
	}
	page("POST", "/login", url.Values{"user": {"bob"}, "password": {"demo"}})
	page("POST", "/cart", url.Values{"item": {"pears"}})
	if account := page("GET", "/account", nil); !strings.Contains(account, `id="user">bob<`) {
		t.Fatalf("signing in during the outage did not work:\n%s", account)
	}

	page("POST", "/demo/redis", url.Values{"redis": {"start"}})
	started := time.Now()
	for strings.Contains(page("GET", "/account", nil), "Redis is not answering") {
		if time.Since(started) > 10*time.Second {
			t.Fatal("the FallbackStore did not go back to Redis within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("back on Redis %v after restarting it", time.Since(started).Round(time.Millisecond))
	if account := page("GET", "/account", nil); !strings.Contains(account, `id="user">bob<`) || !strings.Contains(account, "pears") {
		t.Errorf("after the outage the session made during it is gone:\n%s", account)
	}
}

func TestTheOutageButtonIsOnlyThereWithAFallbackStoreOnTheEmbeddedRedis(t *testing.T) {
	t.Parallel()
	base, _, stop := startRun(t, config{store: "redis"})
	defer stop()
	res, err := http.PostForm(base+"/demo/redis", url.Values{"redis": {"stop"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("POST /demo/redis without -fallback: %d, want 404", res.StatusCode)
	}
}
