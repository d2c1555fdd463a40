package session_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/sessionkit/session"
)

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
