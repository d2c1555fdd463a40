package session_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

// sessionClient is the go-redis configuration README recommends for
// sessions: context deadlines reach the socket, and no automatic retry
// (a retried Incr whose reply was lost would count twice).
func sessionClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  addr,
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
		DialTimeout:           200 * time.Millisecond,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		PoolTimeout:           200 * time.Millisecond,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func newFallback(t *testing.T, primary session.Store, opts session.FallbackOptions) *session.FallbackStore {
	t.Helper()
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = 50 * time.Millisecond
	}
	f, err := session.NewFallbackStore(primary, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFallbackStoreConformanceWhileRedisIsUp(t *testing.T) {
	var clock *fakeRedisClock
	sessiontest.RunStoreTests(t, sessiontest.Harness{
		New: func(t *testing.T) session.Store {
			clock = newFakeRedis(t)
			return newFallback(t, newRedisStore(t, clock.client, session.RedisOptions{}), session.FallbackOptions{Timeout: 5 * time.Second})
		},
		Advance: func(t *testing.T, d time.Duration) { clock.advance(d) },
	})
}

func TestAnOutageIsServedFromMemoryAndReplayedWhenRedisReturns(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	fb, a := s.fb, s.a
	ctx := context.Background()

	alice, bob, carol := a.client(t), a.client(t), a.client(t)
	alice.get("/login?u=alice")
	alice.body("/set?k=cart&v=1")
	bob.get("/login?u=bob")
	carol.get("/login?u=carol")

	for _, user := range []string{"alice", "bob", "carol"} {
		awaitLocalCopy(t, fb, user)
	}
	s.proxy.set(modeReset)
	if res := alice.get("/get?k=cart"); res.Header.Get("X-User") != "alice" {
		t.Fatalf("alice was signed out by the outage (user %q)", res.Header.Get("X-User"))
	}
	if fb.Healthy() {
		t.Fatal("the breaker did not open")
	}
	alice.body("/set?k=cart&v=2")
	if got := alice.body("/get?k=cart"); got != "2" {
		t.Errorf("during the outage alice reads cart=%q, want 2", got)
	}
	fresh := a.client(t)
	fresh.body("/set?k=note&v=created-in-outage")
	bobCookie, carolCookie := bob.cookie, carol.cookie
	bob.get("/logout")
	if _, err := a.m.RevokeAll(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if carol.get("/get").Header.Get("X-User") != "" {
		t.Error("carol is still signed in here after RevokeAll")
	}

	s.proxy.set(modePass)
	waitFor(t, "the breaker closes", 3*time.Second, fb.Healthy)

	onB := func(cookie, target string) *http.Response { return s.onB(t, cookie, target) }
	if res := onB(alice.cookie, "/get?k=cart"); res.Header.Get("X-User") != "alice" || readBody(res) != "2" {
		t.Error("the change alice made during the outage did not reach Redis")
	}
	if got := readBody(onB(fresh.cookie, "/get?k=note")); got != "created-in-outage" {
		t.Errorf("a session created during the outage reads %q on another instance", got)
	}
	if onB(bobCookie, "/get").Header.Get("X-User") != "" {
		t.Error("bob's logout during the outage was not replayed")
	}
	if onB(carolCookie, "/get").Header.Get("X-User") != "" {
		t.Error("carol's revocation during the outage was not replayed")
	}
	if res := alice.get("/get?k=cart"); res.Header.Get("X-User") != "alice" {
		t.Error("alice is signed out after recovery")
	}
	assertEveryKeyHasTTL(t, s.srv.Client(t))
}

func readBody(res *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// faultSetup is a real redis-server, a fault proxy in front of it, an app
// on a FallbackStore through the proxy, and a second app talking to the
// server directly.
type faultSetup struct {
	srv   *redistest.Server
	proxy *faultProxy
	fb    *session.FallbackStore
	a, b  *testApp
}

func newFaultSetup(t *testing.T, opts session.FallbackOptions) *faultSetup {
	t.Helper()
	srv := redistest.Start(t)
	proxy := newFaultProxy(t, srv.Addr)
	fb := newFallback(t, newRedisStore(t, sessionClient(t, proxy.Addr()), session.RedisOptions{}), opts)
	return &faultSetup{
		srv: srv, proxy: proxy, fb: fb,
		a: newTestApp(t, fb, session.Options{}),
		b: newTestApp(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.Options{}),
	}
}

func (s *faultSetup) onB(t *testing.T, cookie, target string) *http.Response {
	c := s.b.client(t)
	c.cookie = cookie
	return c.get(target)
}

func TestWithoutFallbackAnOutageIsAClearErrorWithinTheDeadline(t *testing.T) {
	skipIfShort(t, "takes a real Redis away through the fault proxy, against deadlines")
	srv := redistest.Start(t)
	proxy := newFaultProxy(t, srv.Addr)
	rc := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { rc.Close() })
	var handled error
	a := newTestApp(t, newRedisStore(t, rc, session.RedisOptions{}), session.Options{
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			handled = err
			http.Error(w, "sessions unavailable", http.StatusServiceUnavailable)
		},
	})
	c := a.client(t)
	c.get("/login?u=fay")
	proxy.set(modeBlackhole)
	for _, tc := range []struct {
		name   string
		target string
		c      *client
	}{
		{"reading a session", "/get", c},
		{"saving a new one", "/set?k=a&v=1", a.client(t)},
	} {
		start := time.Now()
		res := tc.c.get(tc.target)
		if took := time.Since(start); took > 250*time.Millisecond {
			t.Errorf("%s took %v; want about the 100ms read timeout", tc.name, took)
		}
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s: status %d, want 503", tc.name, res.StatusCode)
		}
	}
	if handled == nil || !strings.Contains(handled.Error(), "session: redis create") {
		t.Errorf("ErrorHandler got %v, want the store's error", handled)
	}
}
