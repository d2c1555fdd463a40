package session_test

import (
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
	waitFor(t, "a local copy of "+userID+"'s session", 2*time.Second, func() bool { return session.LocalCopiesOf(fb, userID) > 0 })
}
