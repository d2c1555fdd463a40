package pgstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/pgstore"
	"github.com/sessionkit/session/pgstore/pgtest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

// app is one application instance: its own pool, Redis client, CachedStore
// and Manager, sharing the servers and the secret with the others.
type app struct {
	m   *session.Manager
	srv *httptest.Server
}

func newApp(t *testing.T, dsn, redisAddr string) *app {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	pg, err := pgstore.New(pool, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { rdb.Close() })
	cached, err := pgstore.NewCachedStore(pg, rdb, pgstore.CachedOptions{RetryAfter: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cached.Close() })
	m, err := session.New(session.Options{
		Store:         cached,
		Secrets:       [][]byte{[]byte("0123456789abcdef0123456789abcdef-e2e")},
		Cookie:        session.CookieOptions{Insecure: true},
		TouchInterval: 50 * time.Millisecond,
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err == nil {
			err = s.Login(r.Context(), r.URL.Query().Get("u"))
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/incr", func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		var n int64
		if err == nil {
			n, err = s.Incr(r.Context(), "n", 1)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-User", s.UserID())
		w.Header().Set("X-N", fmt.Sprint(n))
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-User", s.UserID())
	})
	a := &app{m: m, srv: httptest.NewServer(m.Middleware(mux))}
	t.Cleanup(a.srv.Close)
	return a
}

// get requests path from a with the client's cookies and returns the
// signed-in user; any status but 200 fails the test.
func get(t *testing.T, c *http.Client, a *app, path string) string {
	t.Helper()
	res, err := c.Get(a.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, res.Status)
	}
	return res.Header.Get("X-User")
}

// TestTwoInstancesThroughARedisOutage drives two instances of an app on
// CachedStore over HTTP with 50 clients: a login on one is seen by the
// other; while Redis is SIGKILLed and restarted empty under that load no
// request fails, nobody is signed out and no count is lost; a revocation on
// one instance takes effect on the other during the outage.
func TestTwoInstancesThroughARedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts redis-server")
	}
	pg := pgtest.Start(t)
	pool, err := pgxpool.New(context.Background(), pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pgstore.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	one, two := newApp(t, pg.DSN, rs.Addr), newApp(t, pg.DSN, rs.Addr)

	const clients = 50
	users := make([]*http.Client, clients)
	for i := range users {
		jar, _ := cookiejar.New(nil) // cookies ignore ports: both instances see them
		users[i] = &http.Client{Jar: jar, Timeout: 10 * time.Second}
		get(t, users[i], one, fmt.Sprint("/login?u=user", i))
		if got := get(t, users[i], two, "/get"); got != fmt.Sprint("user", i) {
			t.Fatalf("user %d on the other instance: %q", i, got)
		}
	}

	// Users 1..49 keep reading and counting on both instances, alternately,
	// while Redis is SIGKILLed and restarted empty: no request may fail or
	// find its user signed out, and no count may be lost.
	var (
		stop     atomic.Bool
		failures atomic.Int64
		requests atomic.Int64
		counts   = make([]int64, clients)
		wg       sync.WaitGroup
	)
	for i := 1; i < clients; i++ {
		wg.Go(func() {
			want := fmt.Sprint("user", i)
			for n := 0; !stop.Load(); n++ {
				a := []*app{one, two}[n%2]
				path := "/get"
				if n%3 == 0 {
					path = "/incr"
				}
				res, err := users[i].Get(a.srv.URL + path)
				if err != nil {
					failures.Add(1)
					t.Errorf("user %d: %v", i, err)
					return
				}
				res.Body.Close()
				requests.Add(1)
				if res.StatusCode != http.StatusOK || res.Header.Get("X-User") != want {
					failures.Add(1)
					t.Errorf("user %d: GET %s: %s, signed in as %q", i, path, res.Status, res.Header.Get("X-User"))
					return
				}
				if path == "/incr" {
					counts[i]++
					if got := res.Header.Get("X-N"); got != fmt.Sprint(counts[i]) {
						failures.Add(1)
						t.Errorf("user %d: count %s, want %d", i, got, counts[i])
						return
					}
				}
			}
		})
	}

	time.Sleep(300 * time.Millisecond)
	rs.Kill()
	time.Sleep(200 * time.Millisecond)
	if n, err := one.m.RevokeAll(context.Background(), "user0"); err != nil || n != 1 {
		t.Fatalf("RevokeAll during the outage = %d, %v", n, err)
	}
	if got := get(t, users[0], two, "/get"); got != "" {
		t.Errorf("user0 is still signed in on the other instance during the outage: %q", got)
	}
	time.Sleep(300 * time.Millisecond)
	rs.Restart(t) // empty
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d of %d requests failed", f, requests.Load())
	}
	t.Logf("%d requests through the outage, none failed", requests.Load())
	for i, c := range users {
		want := fmt.Sprint("user", i)
		if i == 0 {
			want = ""
		}
		for _, a := range []*app{one, two} {
			if got := get(t, c, a, "/get"); got != want {
				t.Errorf("user %d after Redis came back empty: %q, want %q", i, got, want)
			}
		}
	}
}
