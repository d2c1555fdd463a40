package session_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/redis/go-redis/v9"
	"github.com/sessionkit/session"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// countingStore counts the calls that reach a Store, to prove which
// requests cost none.
type countingStore struct {
	session.Store
	calls atomic.Int64
}

func (c *countingStore) count() { c.calls.Add(1) }
func (c *countingStore) Create(ctx context.Context, k session.Key, r session.Record, p session.Policy) (session.Record, error) {
	c.count()
	return c.Store.Create(ctx, k, r, p)
}
func (c *countingStore) Load(ctx context.Context, k session.Key, cl session.Client, p session.Policy) (session.Record, error) {
	c.count()
	return c.Store.Load(ctx, k, cl, p)
}
func (c *countingStore) Update(ctx context.Context, k session.Key, ch session.Change, p session.Policy) error {
	c.count()
	return c.Store.Update(ctx, k, ch, p)
}
func (c *countingStore) Incr(ctx context.Context, k session.Key, n string, d int64, p session.Policy) (int64, error) {
	c.count()
	return c.Store.Incr(ctx, k, n, d, p)
}
func (c *countingStore) Rotate(ctx context.Context, r session.Rotation, p session.Policy) (session.Record, error) {
	c.count()
	return c.Store.Rotate(ctx, r, p)
}
func (c *countingStore) Delete(ctx context.Context, k session.Key) error {
	c.count()
	return c.Store.Delete(ctx, k)
}

// testApp is a Manager around a small handler that does what the URL
// says, and a log that tests can search.
type testApp struct {
	m     *session.Manager
	store *countingStore
	h     http.Handler
	log   *syncBuffer
	// hook, if set, runs inside the handler after Load.
	hook func(w http.ResponseWriter, r *http.Request, s *session.Session)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestApp(t *testing.T, store session.Store, opts session.Options) *testApp {
	t.Helper()
	if ms, ok := store.(*session.MemoryStore); ok {
		t.Cleanup(func() { ms.Close() }) // stop its janitor
	}
	a := &testApp{store: &countingStore{Store: store}, log: &syncBuffer{}}
	opts.Store = a.store
	if opts.Secrets == nil {
		opts.Secrets = [][]byte{testSecret}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(a.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := session.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	a.m = m
	a.h = m.Middleware(http.HandlerFunc(a.serve))
	return a
}

func (a *testApp) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.URL.Path == "/none" {
		fmt.Fprint(w, "untouched")
		return
	}
	s, err := a.m.Load(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if a.hook != nil {
		a.hook(w, r, s)
	}
	ctx := r.Context()
	switch r.URL.Path {
	case "/load":
	case "/get":
	case "/set":
		s.Set(q.Get("k"), q.Get("v"))
	case "/del":
		s.Delete(q.Get("k"))
	case "/incr":
		n, err := s.Incr(ctx, q.Get("k"), 1)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		fmt.Fprint(w, n)
		return
	case "/login":
		err = s.Login(ctx, q.Get("u"))
	case "/renew":
		err = s.Renew(ctx)
	case "/logout":
		err = s.Logout(ctx)
	case "/others":
		var n int
		n, err = s.LogoutOthers(ctx)
		w.Header().Set("X-Count", strconv.Itoa(n))
	case "/login-then-fail", "/renew-then-fail", "/logout-then-fail":
		switch r.URL.Path {
		case "/login-then-fail":
			err = s.Login(ctx, q.Get("u"))
		case "/renew-then-fail":
			err = s.Renew(ctx)
		default:
			err = s.Logout(ctx)
		}
		if err != nil {
			panic(err)
		}
		http.Error(w, "failed after the change", http.StatusInternalServerError)
		return
	case "/login-then-panic":
		if err := s.Login(ctx, q.Get("u")); err != nil {
			panic(err)
		}
		panic("handler panic after Login")
	case "/panic":
		s.Set("k", "from a panicking handler")
		panic("handler panic")
	case "/fail":
		s.Set("k", "from a failing handler")
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case "/flush":
		s.Set("k", "flushed")
		w.Write([]byte("first part "))
		if err := http.NewResponseController(w).Flush(); err != nil {
			panic(err)
		}
		w.Write([]byte("second part"))
		return
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-User", s.UserID())
	w.Header().Set("X-ID", s.ID())
	v, _ := s.Get(q.Get("k"))
	fmt.Fprint(w, v)
}

// client carries one browser's session cookie between requests.
type client struct {
	t      *testing.T
	a      *testApp
	cookie string // the session cookie's value, "" for none
	name   string
}

func (a *testApp) client(t *testing.T) *client {
	return &client{t: t, a: a, name: session.DefaultCookieName}
}

// get sends a request and keeps the cookie the response sets or clears.
func (c *client) get(target string) *http.Response {
	c.t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: c.name, Value: c.cookie})
	}
	return c.do(req)
}

func (c *client) do(req *http.Request) *http.Response {
	c.t.Helper()
	rec := httptest.NewRecorder()
	c.a.h.ServeHTTP(rec, req)
	res := rec.Result()
	for _, ck := range res.Cookies() {
		if ck.Name == c.name {
			if ck.MaxAge < 0 {
				c.cookie = ""
			} else {
				c.cookie = ck.Value
			}
		}
	}
	return res
}

// body sends a request and returns its body, failing on a non-2xx status.
func (c *client) body(target string) string {
	c.t.Helper()
	res := c.get(target)
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		c.t.Fatalf("GET %s: status %d: %s", target, res.StatusCode, b)
	}
	return string(b)
}

func sessionCookie(res *http.Response, name string) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// stores lists the stores every middleware test runs against.
func stores(t *testing.T) map[string]func(t *testing.T) session.Store {
	return map[string]func(t *testing.T) session.Store{
		"memory": func(t *testing.T) session.Store {
			s := session.NewMemoryStore()
			t.Cleanup(func() { s.Close() })
			return s
		},
		"redis": func(t *testing.T) session.Store {
			return newRedisStore(t, newFakeRedis(t).client, session.RedisOptions{})
		},
	}
}

// failingStore fails every call, as a store that is down would.
type failingStore struct{ session.Store }

var errStoreDown = errors.New("store is down")

func (failingStore) Create(context.Context, session.Key, session.Record, session.Policy) (session.Record, error) {
	return session.Record{}, errStoreDown
}
func (failingStore) Load(context.Context, session.Key, session.Client, session.Policy) (session.Record, error) {
	return session.Record{}, errStoreDown
}

// skipIfShort skips a long test (real Redis faults, Cluster, Sentinel,
// failovers, a million of something) under go test -short.
func skipIfShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("long: " + why + "; run without -short")
	}
}

// synctestRun runs f in a synctest bubble: time.Sleep moves a fake clock.
func synctestRun(t *testing.T, f func(t *testing.T)) { synctest.Test(t, f) }

func mustRequest(t *testing.T, target string) *http.Request {
	t.Helper()
	return httptest.NewRequest(http.MethodGet, target, nil)
}

// newRedisStore is NewRedisStore for options a test knows to be valid.
func newRedisStore(t testing.TB, c redis.UniversalClient, opts session.RedisOptions) *session.RedisStore {
	t.Helper()
	s, err := session.NewRedisStore(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
