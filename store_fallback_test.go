package session_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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
	fake := newFakeRedis(t)
	fb := newFallback(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.FallbackOptions{})
	a := newTestApp(t, fb, session.Options{})
	b := newTestApp(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.Options{})
	ctx := context.Background()

	alice, bob, carol := a.client(t), a.client(t), a.client(t)
	alice.get("/login?u=alice")
	alice.body("/set?k=cart&v=1")
	bob.get("/login?u=bob")
	carol.get("/login?u=carol")

	fake.m.SetError("ERR simulated outage")
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

	fake.m.SetError("")
	waitFor(t, "the breaker closes", 3*time.Second, fb.Healthy)

	onB := func(cookie, target string) *http.Response {
		c := b.client(t)
		c.cookie = cookie
		return c.get(target)
	}
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
	assertEveryKeyHasTTL(t, fake.client)
}

func TestWithoutLocalCopiesAnOutageSignsUsersOutHere(t *testing.T) {
	fake := newFakeRedis(t)
	fb := newFallback(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.FallbackOptions{LocalCopies: -1})
	a := newTestApp(t, fb, session.Options{})
	c := a.client(t)
	c.get("/login?u=dee")
	fake.m.SetError("ERR simulated outage")
	t.Cleanup(func() { fake.m.SetError("") }) // before the TTL check on every key
	res := c.get("/get")
	if res.StatusCode != http.StatusOK || res.Header.Get("X-User") != "" {
		t.Errorf("status %d, user %q: want 200 and anonymous", res.StatusCode, res.Header.Get("X-User"))
	}
}

// goroutinesRunning counts the goroutines with fn on their stack.
func goroutinesRunning(fn string) int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
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

func TestAnIncrWhoseReplyIsLostCountsOnce(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	c := s.a.client(t)
	// The first Incr creates the session; the second runs the incr script,
	// so Redis has it cached and the third, the one whose reply is lost,
	// is applied by EVALSHA rather than refused with NOSCRIPT.
	for _, want := range []string{"1", "2"} {
		if got := c.body("/incr?k=n"); got != want {
			t.Fatalf("Incr = %q, want %s", got, want)
		}
	}
	s.a.hook = func(http.ResponseWriter, *http.Request, *session.Session) { s.proxy.set(modeDropReply) }
	res := c.get("/incr?k=n") // the load passes; the Incr reaches Redis, its reply does not
	s.a.hook = nil
	if res.StatusCode != http.StatusConflict || !strings.Contains(readBody(res), "may or may not have applied it") {
		t.Errorf("an Incr with a lost reply: status %d; want the handler's error for ErrUnavailable", res.StatusCode)
	}
	s.proxy.set(modePass)
	waitFor(t, "the breaker closes", 5*time.Second, s.fb.Healthy)
	if got := readBody(s.onB(t, c.cookie, "/get?k=n")); got != "3" {
		t.Errorf("after a lost reply the counter is %q in Redis, want 3 (counted once)", got)
	}
}

func TestABlackholedOrSlowRedisCostsARequestAtMostTheDeadline(t *testing.T) {
	skipIfShort(t, "blackholes and slows a real Redis through the fault proxy")
	const deadline = 100 * time.Millisecond
	for _, tc := range []struct {
		name string
		set  func(p *faultProxy)
	}{
		{"blackhole", func(p *faultProxy) { p.set(modeBlackhole) }},
		{"2s of latency", func(p *faultProxy) { p.setDelay(2 * time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFaultSetup(t, session.FallbackOptions{Timeout: deadline})
			c := s.a.client(t)
			c.get("/login?u=eli")
			c.body("/set?k=a&v=1")
			tc.set(s.proxy)
			var slowest time.Duration
			for i := range 10 {
				for _, req := range []func() *http.Response{
					func() *http.Response { return c.get("/get?k=a") },
					func() *http.Response { return s.a.client(t).get(fmt.Sprintf("/set?k=b&v=%d", i)) },
				} {
					start := time.Now()
					res := req()
					slowest = max(slowest, time.Since(start))
					if res.StatusCode != http.StatusOK {
						t.Fatalf("status %d during the fault", res.StatusCode)
					}
				}
			}
			if slowest > deadline+50*time.Millisecond {
				t.Errorf("the slowest request took %v, want under %v", slowest, deadline+50*time.Millisecond)
			}
			if got := c.body("/get?k=a"); got != "1" {
				t.Errorf("a signed-in user reads %q during the fault, want 1", got)
			}
			s.proxy.set(modePass)
			waitFor(t, "the breaker closes", 5*time.Second, s.fb.Healthy)
			// The proxy keeps goroutines for the pool's idle connections, so
			// count only the store's own: calls abandoned at their deadline.
			waitFor(t, "abandoned calls end (no goroutine leak)", 5*time.Second, func() bool {
				return goroutinesRunning("session.callPrimary") == 0
			})
		})
	}
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

func TestRedisKilledUnderLoadAndRestarted(t *testing.T) {
	skipIfShort(t, "kills and restarts redis-server under load")
	srv := redistest.Start(t)
	fb := newFallback(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.FallbackOptions{})
	a := newTestApp(t, fb, session.Options{})
	b := newTestApp(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.Options{})

	type made struct{ cookie, value string }
	var (
		requests, failed, wrong atomic.Int64
		killed                  atomic.Bool
		mu                      sync.Mutex
		duringOutage            []made
	)
	stop := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				c := a.client(t)
				value := fmt.Sprintf("w%d-%d", w, i)
				// Only sessions made after the kill count: under load (and
				// -race) the 100ms deadline can open the breaker earlier,
				// and what was replayed to Redis before the kill died with it,
				// as every session there did (it keeps nothing on disk).
				inOutage := killed.Load() && !fb.Healthy()
				steps := []string{"/set?k=v&v=" + value, "/get?k=v"}
				if i%3 == 0 {
					steps = append(steps, fmt.Sprintf("/login?u=user%d&k=v", w))
				}
				for _, target := range steps {
					res := c.get(target)
					requests.Add(1)
					if res.StatusCode != http.StatusOK {
						failed.Add(1)
					} else if strings.HasPrefix(target, "/get") && readBody(res) != value {
						wrong.Add(1)
					}
				}
				if inOutage {
					mu.Lock()
					duringOutage = append(duringOutage, made{c.cookie, value})
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(time.Second)
	srv.Kill()
	killed.Store(true)
	time.Sleep(2 * time.Second)
	srv.Restart(t)
	restarted := time.Now()
	wg.Wait()
	// Replay takes time in proportion to what the outage wrote: here tens
	// of thousands of sessions, since memory answers as fast as the
	// clients ask. Requests meanwhile are served from memory.
	waitFor(t, "the breaker closes after the restart", 30*time.Second, fb.Healthy)
	recovered := time.Since(restarted)

	if failed.Load() != 0 || wrong.Load() != 0 {
		t.Errorf("%d of %d requests failed, %d read the wrong value", failed.Load(), requests.Load(), wrong.Load())
	}
	if len(duringOutage) == 0 {
		t.Fatal("no session was created during the outage; the test did not exercise it")
	}
	var lost atomic.Int64
	var check sync.WaitGroup
	for w := range 8 {
		check.Go(func() {
			for i := w; i < len(duringOutage); i += 8 {
				c := b.client(t)
				c.cookie = duringOutage[i].cookie
				if got := readBody(c.get("/get?k=v")); got != duringOutage[i].value {
					lost.Add(1)
				}
			}
		})
	}
	check.Wait()
	if lost.Load() != 0 {
		t.Errorf("%d of %d sessions created during the outage are not readable on another instance", lost.Load(), len(duringOutage))
	}
	t.Logf("%d requests, %d sessions created during the outage, all replayed; Redis used again %v after its restart",
		requests.Load(), len(duringOutage), recovered.Round(10*time.Millisecond))
}

func TestALogoutDuringAnOutageIsDeadEverywhereAfterRecovery(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	c := s.a.client(t)
	c.get("/login?u=gus")
	cookie := c.cookie
	s.proxy.set(modeRefuse)
	s.proxy.set(modeReset)
	c.get("/logout")
	if s.fb.Healthy() {
		t.Fatal("the breaker did not open")
	}
	s.proxy.set(modePass)
	waitFor(t, "the breaker closes", 5*time.Second, s.fb.Healthy)
	if s.onB(t, cookie, "/get").Header.Get("X-User") != "" {
		t.Error("the session logged out during the outage still works on another instance")
	}
	again := s.a.client(t)
	again.cookie = cookie
	if again.get("/get").Header.Get("X-User") != "" {
		t.Error("the session logged out during the outage still works here")
	}
}

func TestClientPauseWriteKeepsReadsGoingAndWritesWithinTheDeadline(t *testing.T) {
	skipIfShort(t, "pauses a real Redis for seconds")
	srv := redistest.Start(t)
	fb := newFallback(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.FallbackOptions{})
	a := newTestApp(t, fb, session.Options{})
	b := newTestApp(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.Options{})
	c := a.client(t)
	c.get("/login?u=hal")
	c.body("/set?k=a&v=1")

	if err := srv.Client(t).Do(context.Background(), "CLIENT", "PAUSE", "2000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	for i, target := range []string{"/get?k=a", "/set?k=a&v=2", "/get?k=a"} {
		start := time.Now()
		res := c.get(target)
		if took := time.Since(start); took > 150*time.Millisecond {
			t.Errorf("%s took %v during the pause; want under 150ms", target, took)
		}
		if res.StatusCode != http.StatusOK || res.Header.Get("X-User") != "hal" {
			t.Errorf("%s: status %d, user %q", target, res.StatusCode, res.Header.Get("X-User"))
		}
		if want := []string{"1", "", "2"}[i]; want != "" && readBody(res) != want {
			t.Errorf("%s read the wrong value during the pause", target)
		}
	}
	waitFor(t, "the breaker closes after the pause", 5*time.Second, fb.Healthy)
	onB := b.client(t)
	onB.cookie = c.cookie
	if got := onB.body("/get?k=a"); got != "2" {
		t.Errorf("the write made during the pause reads %q in Redis, want 2", got)
	}
}

func TestFlappingRedisUnderLoadMixesNoUsersData(t *testing.T) {
	skipIfShort(t, "flaps Redis for seconds under load")
	s := newFaultSetup(t, session.FallbackOptions{})
	stop := time.Now().Add(10 * time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		up := false
		for time.Now().Before(stop) {
			if up {
				s.proxy.set(modeReset)
			} else {
				s.proxy.set(modePass)
			}
			up = !up
			time.Sleep(200 * time.Millisecond)
		}
		s.proxy.set(modePass)
	}()
	var requests, failed, crossed atomic.Int64
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			user := fmt.Sprintf("user%d", w)
			c := s.a.client(t)
			for i := 0; time.Now().Before(stop); i++ {
				target := fmt.Sprintf("/set?k=v&v=%s-%d", user, i)
				switch i % 10 {
				case 0:
					target = "/login?u=" + user + "&k=v"
				case 5:
					target = "/get?k=v"
				}
				res := c.get(target)
				requests.Add(1)
				if res.StatusCode != http.StatusOK {
					failed.Add(1)
					continue
				}
				if u := res.Header.Get("X-User"); u != "" && u != user {
					crossed.Add(1)
				}
				if v := readBody(res); v != "" && !strings.HasPrefix(v, user+"-") {
					crossed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	<-done
	if crossed.Load() != 0 {
		t.Errorf("%d responses showed another user's identity or data", crossed.Load())
	}
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed while Redis flapped", failed.Load(), requests.Load())
	}
	waitFor(t, "the breaker closes once Redis stays up", 5*time.Second, s.fb.Healthy)
	t.Logf("%d requests while Redis flapped every 200ms", requests.Load())
}

func TestTheBreakerReportsToTheLoggerAndObserverItIsGiven(t *testing.T) {
	fake := newFakeRedis(t)
	var log syncBuffer
	var mu sync.Mutex
	heard := map[session.EventKind]int{}
	logger := slog.New(slog.NewTextHandler(&log, nil))
	obs := session.ObserverFunc(func(e session.Event) {
		mu.Lock()
		heard[e.Kind]++
		mu.Unlock()
	})
	fb := newFallback(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.FallbackOptions{Logger: logger, Observer: obs})
	m, err := session.New(session.Options{
		Store:    fb,
		Secrets:  [][]byte{testSecret},
		Logger:   logger,
		Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		s.Set("k", "v")
	}))
	serve := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		return rec.Code
	}

	fake.m.SetError("ERR simulated outage")
	if code := serve(); code != http.StatusOK {
		t.Fatalf("status %d during the outage", code)
	}
	fake.m.SetError("")
	waitFor(t, "the breaker closes", 3*time.Second, fb.Healthy)

	for _, want := range []string{"primary unavailable", "breaker closed"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, log.String())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, kind := range []session.EventKind{session.EventPrimaryDown, session.EventFallback, session.EventPrimaryUp} {
		if heard[kind] == 0 {
			t.Errorf("the Observer heard no %s event (heard %v)", kind, heard)
		}
	}
}

func TestASessionMadeInOneOutageSurvivesTheNext(t *testing.T) {
	fake := newFakeRedis(t)
	fb := newFallback(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.FallbackOptions{})
	a := newTestApp(t, fb, session.Options{})
	t.Cleanup(func() { fake.m.SetError("") })

	fake.m.SetError("ERR first outage")
	c := a.client(t)
	c.body("/set?k=note&v=made-in-outage")
	fake.m.SetError("")
	waitFor(t, "the breaker closes", 3*time.Second, fb.Healthy)

	fake.m.SetError("ERR second outage")
	if got := c.body("/get?k=note"); got != "made-in-outage" {
		t.Errorf("in the second outage the session reads %q; its user was signed out", got)
	}
}
