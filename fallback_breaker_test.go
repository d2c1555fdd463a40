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

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest"
)

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

func TestClientPauseWriteKeepsReadsGoingAndWritesWithinTheDeadline(t *testing.T) {
	srv := sessiontest.StartRedis(t)
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
