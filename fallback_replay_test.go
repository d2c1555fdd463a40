package session_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest/redistest"
)

func TestALogoutDuringAnOutageIsDeadEverywhereAfterRecovery(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	c := s.a.client(t)
	c.get("/login?u=gus")
	cookie := c.cookie
	awaitLocalCopy(t, s.fb, "gus") // else gus is anonymous here in the outage, with nothing to log out
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

func TestRedisKilledUnderLoadAndRestarted(t *testing.T) {
	skipIfShort(t, "kills a real Redis under load and restarts it")
	srv := redistest.Start(t)
	fb := newFallback(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.FallbackOptions{})
	a := newTestApp(t, fb, session.Options{})
	b := newTestApp(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.Options{})

	type made struct{ cookie, value string }
	var (
		requests, failed, wrong atomic.Int64
		signedOut               atomic.Int64 // read before its copy was confirmed
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
					} else if strings.HasPrefix(target, "/get") {
						// A session written to Redis just before the kill has
						// no copy to serve until the change feed confirmed it
						// (one round trip): its user is anonymous here, never
						// shown another value.
						switch got := readBody(res); {
						case got == "" && res.Header.Get("X-User") == "":
							signedOut.Add(1)
						case got != value:
							wrong.Add(1)
						}
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
	t.Logf("%d requests, %d sessions created during the outage, all replayed; Redis used again %v after its restart; %d reads found no confirmed copy yet",
		requests.Load(), len(duringOutage), recovered.Round(10*time.Millisecond), signedOut.Load())
}

func TestARenewalDuringAnOutageDoesNotBringBackASessionRevokedElsewhere(t *testing.T) {
	for _, tc := range []struct {
		name   string
		revoke func(t *testing.T, s *faultSetup, id string)
	}{
		{"Revoke by public ID", func(t *testing.T, s *faultSetup, id string) {
			if err := s.b.m.Revoke(t.Context(), "alice", id); err != nil {
				t.Fatal(err)
			}
		}},
		{"RevokeAll", func(t *testing.T, s *faultSetup, _ string) {
			if _, err := s.b.m.RevokeAll(t.Context(), "alice"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFaultSetup(t, session.FallbackOptions{})
			alice := s.a.client(t)
			alice.get("/login?u=alice")
			id := alice.get("/get").Header.Get("X-ID")
			awaitLocalCopy(t, s.fb, "alice")

			s.proxy.set(modeReset)
			if res := alice.get("/renew"); res.StatusCode != 200 || res.Header.Get("X-User") != "alice" {
				t.Fatalf("the renewal during the outage was not served (status %d)", res.StatusCode)
			}
			tc.revoke(t, s, id)
			s.proxy.set(modePass)
			waitFor(t, "the breaker closes", 5*time.Second, s.fb.Healthy)

			if u := s.onB(t, alice.cookie, "/get").Header.Get("X-User"); u != "" {
				t.Errorf("the session renewed during the outage is alive on B after the replay (user %q)", u)
			}
			if u := alice.get("/get").Header.Get("X-User"); u != "" {
				t.Errorf("the session renewed during the outage is alive on A after the replay (user %q)", u)
			}
		})
	}
}

func TestALoginDuringAnOutageDoesNotOutliveARevokeAllMadeElsewhereMeanwhile(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	phone := s.b.client(t)
	phone.get("/login?u=alice") // alice is known to Redis

	s.proxy.set(modeReset)
	laptop := s.a.client(t)
	if res := laptop.get("/login?u=alice"); res.Header.Get("X-User") != "alice" {
		t.Fatalf("login during the outage: status %d", res.StatusCode)
	}
	if _, err := s.b.m.RevokeAll(t.Context(), "alice"); err != nil {
		t.Fatal(err)
	}
	s.proxy.set(modePass)
	waitFor(t, "the breaker closes", 5*time.Second, s.fb.Healthy)
	if u := s.onB(t, laptop.cookie, "/get").Header.Get("X-User"); u != "" {
		t.Errorf("a login made on A during its outage survives a later RevokeAll on B (user %q)", u)
	}
}

// TestARedisRestartWithoutPersistenceEndsTheSessionsItHeld pins what an
// outage that loses Redis's data costs: a session this instance only read
// during the outage (from its local copy) is signed out once Redis is back,
// since nothing proves it was not ended meanwhile; one created or renewed
// here during the outage exists nowhere else and is restored.
func TestARedisRestartWithoutPersistenceEndsTheSessionsItHeld(t *testing.T) {
	srv := redistest.Start(t)
	fb := newFallback(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.FallbackOptions{})
	a := newTestApp(t, fb, session.Options{})
	b := newTestApp(t, newRedisStore(t, sessionClient(t, srv.Addr), session.RedisOptions{}), session.Options{})
	alice := a.client(t)
	alice.get("/login?u=alice")
	awaitLocalCopy(t, fb, "alice")

	srv.Kill()
	if u := alice.get("/get").Header.Get("X-User"); u != "alice" {
		t.Fatalf("during the outage alice is not served from the local copy (user %q)", u)
	}
	bob := a.client(t)
	bob.get("/login?u=bob")
	srv.Restart(t) // empty: it keeps nothing on disk
	waitFor(t, "the breaker closes", 10*time.Second, fb.Healthy)

	if u := alice.get("/get").Header.Get("X-User"); u != "" {
		t.Errorf("after Redis lost its data, alice's session is %q; the documented cost is that it ends", u)
	}
	onB := b.client(t)
	onB.cookie = bob.cookie
	if u := onB.get("/get").Header.Get("X-User"); u != "bob" {
		t.Errorf("a login made during the outage is not in the restarted Redis (user %q)", u)
	}
}

func TestLogoutOthersDuringAnOutageKeepsTheSessionItKeptAfterTheReplay(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	phone := s.b.client(t)
	phone.get("/login?u=alice")
	laptop := s.a.client(t)
	laptop.get("/login?u=alice")
	awaitLocalCopy(t, s.fb, "alice")

	s.proxy.set(modeReset)
	if res := laptop.get("/renew"); res.Header.Get("X-User") != "alice" { // say, a password change
		t.Fatalf("renewal during the outage: status %d", res.StatusCode)
	}
	if res := laptop.get("/others"); res.StatusCode != 200 {
		t.Fatalf("logging out other devices during the outage: status %d", res.StatusCode)
	}
	s.proxy.set(modePass)
	waitFor(t, "the breaker closes", 5*time.Second, s.fb.Healthy)

	if u := s.onB(t, laptop.cookie, "/get").Header.Get("X-User"); u != "alice" {
		t.Errorf("the session kept by LogoutOthers during the outage is gone after the replay (user %q)", u)
	}
	if u := s.onB(t, phone.cookie, "/get").Header.Get("X-User"); u != "" {
		t.Errorf("the other device is still signed in after the replayed LogoutOthers (user %q)", u)
	}
}
