package session_test

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest/redistest"
)

// failoverSlack is how long after the new primary is in place every request
// must succeed again.
const failoverSlack = 5 * time.Second

// failoverModes are the two ways to run a store through a failover: as
// configured by default, where a write acknowledged just before the crash
// may not have reached the replica yet, and with WaitReplicas, where
// logins and logouts wait for it.
var failoverModes = []struct {
	name    string
	opts    session.RedisOptions
	durable bool // no acknowledged login or logout may be lost
}{
	{"with asynchronous replication", session.RedisOptions{}, false},
	{"with WaitReplicas 1", session.RedisOptions{WaitReplicas: 1, WaitTimeout: 500 * time.Millisecond}, true},
}

func TestRedisClusterFailover(t *testing.T) {
	skipIfShort(t, "kills a Redis Cluster primary and waits for the failover")
	for _, mode := range failoverModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := redistest.StartCluster(t)
			cc := cluster.Client(t, nil)
			primaries, err := cluster.Primaries()
			if err != nil {
				t.Fatal(err)
			}
			victim := primaries[0]
			r := runFailover(t, newRedisStore(t, cc, mode.opts),
				victim.Kill,
				func() error { return cluster.WaitHealthy(30 * time.Second) })
			r.check(t, mode.durable)
			// The promoted replica never ran the scripts: the store met
			// NOSCRIPT there and fell back to EVAL.
			now, err := cluster.Primaries()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range now {
				if p != primaries[1] && p != primaries[2] {
					assertScriptFallback(t, p.Addr)
				}
			}
		})
	}
}

func TestRedisSentinelFailover(t *testing.T) {
	skipIfShort(t, "kills the Sentinel primary and waits for the failover")
	for _, mode := range failoverModes {
		t.Run(mode.name, func(t *testing.T) {
			sentinel := redistest.StartSentinel(t)
			fc := sentinel.Client(t, nil)
			victim, err := sentinel.Primary()
			if err != nil {
				t.Fatal(err)
			}
			var promoted *redistest.Server
			r := runFailover(t, newRedisStore(t, fc, mode.opts),
				victim.Kill,
				func() (err error) {
					promoted, err = sentinel.WaitFailover(victim, 30*time.Second)
					return err
				})
			r.check(t, mode.durable)
			if promoted != nil {
				assertScriptFallback(t, promoted.Addr)
			}
		})
	}
}

func assertScriptFallback(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(t.Context(), "commandstats", "errorstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, "errorstat_NOSCRIPT:") || !strings.Contains(info, "cmdstat_eval:") {
		t.Errorf("promoted primary %s shows no NOSCRIPT followed by EVAL:\n%s", addr, info)
	}
}

// failoverReport is what one failover run measured.
type failoverReport struct {
	kill, promoted, lastFailure time.Time
	requests, failed            int
	afterRecovery               int // requests that succeeded after the last failure
	loggedIn, lostLogins        int // acknowledged logins still live at the end, and those lost
	lostWrites                  int // acknowledged values found with an older value
	loggedOut, lostLogouts      int // acknowledged logouts, and those whose session came back
	lostMidRun                  int // sessions found anonymous in the middle of their run
	timedOut                    bool
	samples                     []string // the first failures
}

func (r *failoverReport) check(t *testing.T, durable bool) {
	t.Helper()
	failover := r.promoted.Sub(r.kill)
	recovered := time.Duration(0)
	if !r.lastFailure.IsZero() {
		recovered = r.lastFailure.Sub(r.kill)
	}
	t.Logf("failover: new primary in place %v after SIGKILL; last failed request %v after it; %d of %d requests failed, %d succeeded after the last failure",
		failover.Round(time.Millisecond), recovered.Round(time.Millisecond), r.failed, r.requests, r.afterRecovery)
	t.Logf("lost to asynchronous replication: %d of %d acknowledged logins, %d values, %d of %d acknowledged logouts (sessions back from the dead); %d sessions seen lost mid-run",
		r.lostLogins, r.loggedIn, r.lostWrites, r.lostLogouts, r.loggedOut, r.lostMidRun)
	for _, f := range r.samples {
		t.Logf("failed request: %s", f)
	}
	if r.timedOut {
		t.Fatalf("no failover within the time limit")
	}
	if recovered > failover+failoverSlack {
		t.Errorf("requests still failed %v after the kill; the new primary was in place after %v (allowed slack %v)", recovered, failover, failoverSlack)
	}
	if r.afterRecovery < 50 {
		t.Errorf("only %d requests succeeded after the last failure", r.afterRecovery)
	}
	if durable && (r.lostLogins > 0 || r.lostLogouts > 0) {
		t.Errorf("with WaitReplicas, %d acknowledged logins and %d acknowledged logouts were lost", r.lostLogins, r.lostLogouts)
	}
}

// runFailover has 20 clients log in, write, read and log out through a
// Manager on store, kills the primary with kill after a warm-up, waits for
// promoted, runs until every request has succeeded for a while, and then
// checks every acknowledged login, write and logout.
func runFailover(t *testing.T, store session.Store, kill func(), promoted func() error) *failoverReport {
	t.Helper()
	a := newTestApp(t, store, session.Options{Logger: slog.New(slog.DiscardHandler)})
	r := &failoverReport{}
	var mu sync.Mutex // guards r while the clients run
	// tracked is one session and what the server acknowledged about it:
	// a step that failed leaves its outcome open, so it is not counted.
	type tracked struct {
		c         *client // the browser; for a logged-out session, its cookie from before
		user      string
		values    []string // values of "n" the last acknowledged steps allow
		loggedOut bool
	}
	var sessions []*tracked
	stop := make(chan struct{})
	record := func(ok bool, what string) {
		mu.Lock()
		defer mu.Unlock()
		r.requests++
		if !ok && len(r.samples) < 3 {
			r.samples = append(r.samples, what)
		}
		if ok {
			if !r.lastFailure.IsZero() || !r.kill.IsZero() {
				r.afterRecovery++
			}
			return
		}
		r.failed++
		r.lastFailure = time.Now()
		r.afterRecovery = 0
	}
	// request sends one request and says whether it succeeded as the
	// session of user.
	request := func(c *client, target, user string) (string, bool) {
		res := c.get(target)
		b, _ := io.ReadAll(res.Body)
		ok := res.StatusCode < 300
		record(ok, fmt.Sprintf("%s: %d %s", target, res.StatusCode, strings.TrimSpace(string(b))))
		if ok && res.Header.Get("X-User") != user {
			mu.Lock()
			r.lostMidRun++
			mu.Unlock()
			return string(b), false
		}
		return string(b), ok
	}
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				user := fmt.Sprintf("client%d-%d", w, i)
				value := fmt.Sprint(i)
				c := a.client(t)
				if _, ok := request(c, "/login?u="+user, user); !ok {
					continue
				}
				s := &tracked{c: c, user: user, values: []string{""}}
				mu.Lock()
				sessions = append(sessions, s)
				mu.Unlock()
				_, ok := request(c, "/set?k=n&v="+value, user)
				mu.Lock()
				s.values = append(s.values, value) // a failed write may have landed
				if ok {
					s.values = []string{value}
				}
				mu.Unlock()
				if !ok {
					continue
				}
				if got, ok := request(c, "/get?k=n", user); !ok || got != value || i%2 == 0 {
					continue
				}
				before := *c
				if _, ok := request(c, "/logout", ""); ok {
					mu.Lock()
					s.c, s.loggedOut = &before, true
					mu.Unlock()
				} else {
					mu.Lock()
					s.values = nil // logged out or not: unknown
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	r.kill = time.Now()
	mu.Unlock()
	kill()
	promotedErr := promoted()
	mu.Lock()
	r.promoted = time.Now()
	mu.Unlock()
	// Run on until every request has succeeded for 2s, or give up 20s
	// after the promotion.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		quiet := time.Since(r.lastFailure) > 2*time.Second && time.Since(r.promoted) > 2*time.Second
		mu.Unlock()
		if quiet {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if promotedErr != nil {
		t.Log(promotedErr)
		r.timedOut = true
		return r
	}
	for _, s := range sessions {
		if s.values == nil && !s.loggedOut {
			continue
		}
		res := s.c.get("/get?k=n")
		b, _ := io.ReadAll(res.Body)
		switch {
		case res.StatusCode >= 300:
			t.Errorf("checking a session after the failover: status %d: %s", res.StatusCode, b)
		case s.loggedOut:
			r.loggedOut++
			if res.Header.Get("X-User") != "" {
				r.lostLogouts++
			}
		case res.Header.Get("X-User") != s.user:
			r.loggedIn++
			r.lostLogins++
		case !slices.Contains(s.values, string(b)):
			r.loggedIn++
			r.lostWrites++
		default:
			r.loggedIn++
		}
	}
	return r
}
