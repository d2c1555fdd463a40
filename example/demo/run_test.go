package demo

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/sessionkit/session"

	"github.com/sessionkit/session/example/demo/demotest"
)

var quiet = slog.New(slog.DiscardHandler)

func TestEachStoreChoiceOpens(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no configuration runs an embedded Redis", Config{Store: "redis"}, "Redis (embedded miniredis)"},
		{"REDIS_URL uses that server", Config{Store: "redis", RedisURL: "redis://" + mr.Addr() + "/0"}, "Redis at " + mr.Addr()},
		{"-fallback puts a FallbackStore in front", Config{Store: "redis", Fallback: true}, "Redis (embedded miniredis) behind a FallbackStore"},
		{"-store=memory uses a MemoryStore", Config{Store: "memory"}, "MemoryStore"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := openStore(context.Background(), tt.cfg, quiet)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if st.Name != tt.want {
				t.Errorf("store %q, want %q", st.Name, tt.want)
			}
			if (st.Healthy != nil) != tt.cfg.Fallback {
				t.Errorf("health check present: %v, want %v", st.Healthy != nil, tt.cfg.Fallback)
			}
		})
	}
}

func TestBadStoreChoicesAreExplained(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"an unknown store", Config{Store: "postgres"}, "want redis or memory"},
		{"fallback without Redis", Config{Store: "memory", Fallback: true}, "does not go with -store=memory"},
		{"a REDIS_URL that does not parse", Config{Store: "redis", RedisURL: "http://nope"}, "REDIS_URL"},
		{"a Redis that does not answer", Config{Store: "redis", RedisURL: "redis://127.0.0.1:1/0"}, "unset REDIS_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, err := openStore(context.Background(), tt.cfg, quiet)
			if err == nil {
				st.Close()
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

// startRun runs the demo with cfg on a free loopback port; see demotest.Serve.
func startRun(t *testing.T, cfg Config) (base string, printed func() string, stop func() error) {
	t.Helper()
	cfg.Addr, cfg.Secret = "127.0.0.1:0", strings.Repeat("k", 32)
	return demotest.Serve(t, func(ctx context.Context, out io.Writer) error { return Run(ctx, cfg, out, quiet) })
}

func TestRunServesOnLocalhostAndStopsWhenAsked(t *testing.T) {
	t.Parallel()
	base, out, stop := startRun(t, Config{Store: "redis"})
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
	if !strings.Contains(out(), "stopped") {
		t.Errorf("run did not say it stopped: %q", out())
	}
}

func TestTheOutageButtonShowsTheFallbackStoreAtWork(t *testing.T) {
	t.Parallel()
	// Insecure: Go's cookie jar sends no Secure cookie over http://localhost.
	base, _, stop := startRun(t, Config{Store: "redis", Fallback: true, Insecure: true})
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
	base, _, stop := startRun(t, Config{Store: "redis"})
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

func TestAStoreACommandAddsIsOfferedByName(t *testing.T) {
	t.Parallel()
	opened := false
	stores := map[string]StoreOpener{"custom": func(context.Context, Config, *slog.Logger) (*Store, error) {
		opened = true
		s := session.NewMemoryStore()
		return &Store{Store: s, Name: "a custom store", Close: func() { s.Close() }}, nil
	}}
	st, err := openStore(context.Background(), Config{Store: "custom", Stores: stores}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if !opened || st.Name != "a custom store" {
		t.Errorf("opened %v, store %q", opened, st.Name)
	}
	_, err = openStore(context.Background(), Config{Store: "nope", Stores: stores}, quiet)
	if err == nil || !strings.Contains(err.Error(), "want redis, memory or custom") {
		t.Errorf("an unknown store with one added: %v", err)
	}
}
