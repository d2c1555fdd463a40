package session_test

import (
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/sessionkit/session"
)

func TestTheObserverHearsEveryStoreCallAndSecurityEvent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[session.EventKind]int{}
	var notFound int
	obs := session.ObserverFunc(func(e session.Event) {
		mu.Lock()
		defer mu.Unlock()
		seen[e.Kind]++
		if errors.Is(e.Err, session.ErrNotFound) {
			notFound++
		}
	})
	a := newTestApp(t, newRedisStore(t, newFakeRedis(t).client, session.RedisOptions{}), session.Options{Observer: obs})
	c := a.client(t)
	c.get("/set?k=a&v=1") // create
	c.get("/set?k=a&v=2") // load, update
	c.get("/incr?k=n")    // load, incr
	c.get("/login?u=obs") // load, rotate
	old := c.cookie
	c.get("/renew")                                             // load, rotate
	c.get("/others")                                            // load, revoke
	if _, err := a.m.Sessions(t.Context(), "obs"); err != nil { // list
		t.Fatal(err)
	}
	c.get("/logout") // load, delete
	replay := a.client(t)
	replay.cookie = old
	replay.get("/get") // load (not found), session_ended
	forged := a.client(t)
	forged.cookie = "forged"
	forged.get("/get") // cookie_rejected
	both := mustRequest(t, "/get")
	both.Header.Set("Cookie", named(c.cookie)+"; "+named(c.cookie))
	c.do(both) // cookie_ambiguous

	want := map[session.EventKind]int{
		session.EventCreate: 1, session.EventLoad: 7, session.EventUpdate: 1, session.EventIncr: 1,
		session.EventRotate: 2, session.EventRevoke: 1, session.EventList: 1, session.EventDelete: 1,
		session.EventSessionEnded: 1, session.EventCookieRejected: 1, session.EventCookieAmbiguous: 1,
	}
	mu.Lock()
	defer mu.Unlock()
	if !maps.Equal(seen, want) {
		keys := slices.Sorted(maps.Keys(want))
		for _, k := range keys {
			if seen[k] != want[k] {
				t.Errorf("%s: %d events, want %d", k, seen[k], want[k])
			}
		}
		t.Errorf("all events: %v", seen)
	}
	if notFound != 2 { // the replayed load, and its session_ended event
		t.Errorf("%d events carry ErrNotFound, want 2", notFound)
	}
}
