package session_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
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
			awaitLocalCopy(t, s.fb, "eli")
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
	skipIfShort(t, "pauses a real Redis")
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
	skipIfShort(t, "flaps a real Redis for 10s under load")
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

	fake.m.Close() // a Redis that does not answer; an error reply is an answer
	if code := serve(); code != http.StatusOK {
		t.Fatalf("status %d during the outage", code)
	}
	if err := fake.m.Restart(); err != nil {
		t.Fatal(err)
	}
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

// fillToOOM fills srv until deny-oom writes are refused, then lowers
// maxmemory well below what it holds so that none slips in at the limit.
func fillToOOM(t *testing.T, admin *redis.Client) {
	t.Helper()
	fillUntil(t, admin, 64, func(err error) bool { return err != nil && strings.Contains(err.Error(), "OOM") })
	used := infoField(t, admin.Info(context.Background(), "memory").Val(), "used_memory")
	if err := admin.ConfigSet(context.Background(), "maxmemory", strconv.FormatInt(used/2, 10)).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestARedisErrorReplyIsAnAnswerNotAnOutage(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
	fb := newFallback(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.FallbackOptions{})
	a := newTestApp(t, fb, session.Options{})
	b := newTestApp(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.Options{})
	alice := a.client(t)
	alice.get("/login?u=alice")
	alice.body("/set?k=cart&v=apples")

	fillToOOM(t, srv.Client(t))
	res := alice.get("/set?k=cart&v=pears")
	if res.StatusCode < 500 {
		t.Errorf("a write refused with OOM answered %d; want the ErrorHandler's 5xx", res.StatusCode)
	}
	if !fb.Healthy() {
		t.Fatal("an OOM reply opened the breaker: Redis answered, it is not down")
	}

	// A logout is a DEL, which Redis allows under OOM: it must reach A.
	onB := b.client(t)
	onB.cookie = alice.cookie
	if res := onB.get("/logout"); res.StatusCode != http.StatusOK {
		t.Fatalf("logout on B under OOM: status %d", res.StatusCode)
	}
	if u := alice.get("/get?k=cart").Header.Get("X-User"); u != "" {
		t.Errorf("after a logout on B, A still serves alice's session (user %q)", u)
	}
}

func TestARefusedReplayDoesNotKeepTheStoreOnMemory(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
	proxy := newFaultProxy(t, srv.Addr)
	fb := newFallback(t, newRedisStore(t, sessionClient(t, proxy.Addr()), session.RedisOptions{}), session.FallbackOptions{})
	a := newTestApp(t, fb, session.Options{})

	proxy.set(modeReset)
	made := a.client(t)
	made.body("/set?k=note&v=made-in-outage")
	if fb.Healthy() {
		t.Fatal("the breaker did not open")
	}
	fillToOOM(t, srv.Client(t))
	proxy.set(modePass)
	// The replayed create is refused (OOM): Redis answers, so the store
	// goes back to it, and says what it could not replay.
	waitFor(t, "the breaker closes although Redis refuses the replay", 5*time.Second, fb.Healthy)
}

func TestRedisStoreMarksErrorRepliesAsAnswersAndOutagesAsNot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		reply    string // "" closes the server instead
		answered bool
	}{
		{"OOM command not allowed when used memory > 'maxmemory'", true},
		{"READONLY You can't write against a read only replica.", true},
		{"WRONGTYPE Operation against a key holding the wrong kind of value", true},
		{"ERR something the server did not like", true},
		{"LOADING Redis is loading the dataset in memory", false},
		{"MASTERDOWN Link with MASTER is down", false},
		{"CLUSTERDOWN The cluster is down", false},
		{"TRYAGAIN Multiple keys request during rehashing of slot", false},
		{"BUSY Redis is busy running a script", false},
		{"", false},
	} {
		fake := newFakeRedis(t)
		store := newRedisStore(t, fake.client, session.RedisOptions{})
		k := sessiontest.NewKey("ann")
		if tc.reply == "" {
			fake.m.Close()
		} else {
			fake.m.SetError(tc.reply)
		}
		_, err := store.Load(t.Context(), k, session.Client{}, testPolicy)
		if got := errors.Is(err, session.ErrRefused); got != tc.answered {
			t.Errorf("reply %q: errors.Is(err, ErrRefused) = %v, want %v (err %v)", tc.reply, got, tc.answered, err)
		}
		fake.m.SetError("")
		if tc.reply == "" {
			_ = fake.m.Restart()
		}
	}
}
