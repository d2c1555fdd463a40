package session_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sessionkit/session"
)

func TestWithoutLocalCopiesAnOutageSignsUsersOutHere(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{LocalCopies: -1})
	c := s.a.client(t)
	c.get("/login?u=dee")
	s.proxy.set(modeReset)
	res := c.get("/get")
	if res.StatusCode != http.StatusOK || res.Header.Get("X-User") != "" {
		t.Errorf("status %d, user %q: want 200 and anonymous", res.StatusCode, res.Header.Get("X-User"))
	}
}

func TestASessionMadeInOneOutageSurvivesTheNext(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	s.proxy.set(modeReset)
	c := s.a.client(t)
	c.body("/set?k=note&v=made-in-outage")
	s.proxy.set(modePass)
	waitFor(t, "the breaker closes", 3*time.Second, s.fb.Healthy)
	awaitLocalCopy(t, s.fb, "")

	s.proxy.set(modeReset)
	if got := c.body("/get?k=note"); got != "made-in-outage" {
		t.Errorf("in the second outage the session reads %q; its user was signed out", got)
	}
}

// awaitLocalCopy waits until fb holds a copy of a session of userID that it
// would serve in an outage ("" for an anonymous session).
func awaitLocalCopy(t *testing.T, fb *session.FallbackStore, userID string) {
	t.Helper()
	has := func() bool { return session.LocalCopiesOf(fb, userID) > 0 }
	waitFor(t, "a local copy of "+userID+"'s session", 2*time.Second, has)
	// The report of a write made before now (a touch, the login itself)
	// may still be on its way, and would drop the copy seen here until it
	// is confirmed again.
	if err := session.FeedBarrier(fb); err != nil {
		t.Fatalf("change feed: %v", err)
	}
	waitFor(t, "a local copy of "+userID+"'s session, confirmed after the feed's barrier", 2*time.Second, has)
}

// eventually polls cond for up to within and reports whether it held.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func TestALocalCopyIsNotServedAfterALogoutElsewhere(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	alice := s.a.client(t)
	alice.get("/login?u=alice")
	alice.body("/set?k=cart&v=apples")
	cookie := alice.cookie
	if res := s.onB(t, cookie, "/logout"); res.StatusCode != 200 {
		t.Fatalf("logout on B: status %d", res.StatusCode)
	}
	eventually(time.Second, func() bool { return session.LocalCopiesOf(s.fb, "alice") == 0 })

	s.proxy.set(modeReset)
	if u := alice.get("/get?k=cart").Header.Get("X-User"); u != "" {
		t.Errorf("in an outage after a logout on B, A serves alice's session from its copy (user %q)", u)
	}
}

func TestALocalCopyIsNotServedAfterARevokeAllReplayedByAnotherInstance(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	alice := s.a.client(t)
	alice.get("/login?u=alice")
	alice.body("/set?k=cart&v=apples")

	// Instance C has an outage of its own, during which alice's sessions
	// are revoked there; C replays that when Redis is back to it.
	proxyC := newFaultProxy(t, s.srv.Addr)
	fbC := newFallback(t, newRedisStore(t, sessionClient(t, proxyC.Addr()), session.RedisOptions{}), session.FallbackOptions{})
	c := newTestApp(t, fbC, session.Options{})
	proxyC.set(modeReset)
	c.client(t).get("/set?k=x&v=1") // opens C's breaker
	if fbC.Healthy() {
		t.Fatal("C's breaker did not open")
	}
	if _, err := c.m.RevokeAll(t.Context(), "alice"); err != nil {
		t.Fatal(err)
	}
	proxyC.set(modePass)
	waitFor(t, "C replays its outage", 5*time.Second, fbC.Healthy)
	if u := s.onB(t, alice.cookie, "/get").Header.Get("X-User"); u != "" {
		t.Fatalf("C's replayed RevokeAll did not end alice's session on Redis (user %q)", u)
	}
	eventually(time.Second, func() bool { return session.LocalCopiesOf(s.fb, "alice") == 0 })

	s.proxy.set(modeReset)
	if u := alice.get("/get?k=cart").Header.Get("X-User"); u != "" {
		t.Errorf("in A's outage, A serves a session C's replayed RevokeAll ended (user %q)", u)
	}
}

func TestALocalCopyIsNotTrustedAcrossALostChangeFeed(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	alice, bob := s.a.client(t), s.a.client(t)
	alice.get("/login?u=alice")
	bob.get("/login?u=bob")
	awaitLocalCopy(t, s.fb, "alice")
	awaitLocalCopy(t, s.fb, "bob")
	epoch := session.FeedEpoch(s.fb)

	// Reports to A stop, and alice logs out on B meanwhile: A cannot hear
	// of it, so nothing confirmed before the feed was lost is trusted once
	// it is back; what is still live is read again under the new feed.
	if err := s.srv.Client(t).Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if res := s.onB(t, alice.cookie, "/logout"); res.StatusCode != http.StatusOK {
		t.Fatalf("logout on B: status %d", res.StatusCode)
	}
	waitFor(t, "a new feed epoch", 5*time.Second, func() bool { return session.FeedEpoch(s.fb) > epoch })
	awaitLocalCopy(t, s.fb, "bob")

	s.proxy.set(modeReset)
	if u := alice.get("/get").Header.Get("X-User"); u != "" {
		t.Errorf("a copy confirmed before the feed was lost is served after a logout A could not hear of (user %q)", u)
	}
	if u := bob.get("/get").Header.Get("X-User"); u != "bob" {
		t.Errorf("a session read again under the re-established feed is not served (user %q)", u)
	}
}

func TestWithoutAChangeFeedNoLocalCopyIsServed(t *testing.T) {
	fake := newFakeRedis(t) // miniredis has no CLIENT TRACKING
	fb := newFallback(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.FallbackOptions{})
	a := newTestApp(t, fb, session.Options{})
	c := a.client(t)
	c.get("/login?u=dee")
	c.get("/get")
	fake.m.Close()
	defer func() { _ = fake.m.Restart() }() // for the check of every key's TTL
	if u := c.get("/get").Header.Get("X-User"); u != "" {
		t.Errorf("with no way to hear of changes, an outage served a local copy (user %q)", u)
	}
}

func TestTheChangeFeedOutlastsABusySessionAndKeepsItsCopyConfirmed(t *testing.T) {
	s := newFaultSetup(t, session.FallbackOptions{})
	c := s.a.client(t)
	c.get("/login?u=ivy")
	awaitLocalCopy(t, s.fb, "ivy")
	epoch := session.FeedEpoch(s.fb)
	for i := range 300 {
		c.get(fmt.Sprintf("/set?k=n&v=%d", i))
	}
	awaitLocalCopy(t, s.fb, "ivy")
	if got := session.FeedEpoch(s.fb); got != epoch {
		t.Errorf("300 requests moved the change feed from epoch %d to %d: confirming copies must not cost the feed its connections", epoch, got)
	}
	s.proxy.set(modeReset)
	if got := c.body("/get?k=n"); got != "299" {
		t.Errorf("in the outage the busy session reads n=%q, want 299", got)
	}
}
