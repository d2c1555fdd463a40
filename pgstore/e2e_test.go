package pgstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
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
// CachedStore over HTTP: a login on one is seen by the other, a revocation
// on one takes effect on the other while Redis is down, and after Redis
// comes back empty everyone else is still signed in.
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

	users := make([]*http.Client, 10)
	for i := range users {
		jar, _ := cookiejar.New(nil) // cookies ignore ports: both instances see them
		users[i] = &http.Client{Jar: jar}
		get(t, users[i], one, fmt.Sprint("/login?u=user", i))
		if got := get(t, users[i], two, "/get"); got != fmt.Sprint("user", i) {
			t.Fatalf("user %d on the other instance: %q", i, got)
		}
	}

	rs.Kill()
	if n, err := one.m.RevokeAll(context.Background(), "user0"); err != nil || n != 1 {
		t.Fatalf("RevokeAll during the outage = %d, %v", n, err)
	}
	if got := get(t, users[0], two, "/get"); got != "" {
		t.Errorf("user0 is still signed in on the other instance during the outage: %q", got)
	}
	for i := 1; i < len(users); i++ {
		for _, a := range []*app{one, two} {
			if got := get(t, users[i], a, "/get"); got != fmt.Sprint("user", i) {
				t.Errorf("user %d during the outage: %q", i, got)
			}
		}
	}

	rs.Restart(t) // empty
	time.Sleep(150 * time.Millisecond)
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
