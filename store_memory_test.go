package session_test

import (
	"errors"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest"
)

func TestMemoryStoreKeepsItsSizeCapUnderAFlood(t *testing.T) {
	skipIfShort(t, "a million session creations")
	t.Parallel()
	s := session.NewMemoryStore(session.WithMaxSessions(1000))
	defer s.Close()
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: time.Hour, TouchInterval: time.Minute}
	var first session.Key
	for i := range 1_000_000 {
		k := sessiontest.NewKey("")
		if i == 0 {
			first = k
		}
		if _, err := s.Create(t.Context(), k, session.Record{Info: session.Info{ID: "x"}}, p); err != nil {
			t.Fatal(err)
		}
		if n := s.Len(); n > 1000 {
			t.Fatalf("after %d creations the store holds %d sessions, over its cap of 1000", i+1, n)
		}
	}
	if _, err := s.Load(t.Context(), first, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the least recently used session survived the flood: err = %v", err)
	}
}

func TestMemoryStoreJanitorReclaimsExpiredSessionsAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := session.NewMemoryStore(session.WithCleanupInterval(time.Minute))
		p := session.Policy{IdleTimeout: 10 * time.Minute, Lifetime: time.Hour, TouchInterval: time.Minute}
		for range 50 {
			if _, err := s.Create(t.Context(), sessiontest.NewKey("u"), session.Record{Info: session.Info{ID: "x"}}, p); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(11 * time.Minute)
		synctest.Wait()
		if n := s.Len(); n != 0 {
			t.Errorf("%d expired sessions were not reclaimed", n)
		}
		before := runtime.NumGoroutine()
		s.Close()
		s.Close() // idempotent
		synctest.Wait()
		if after := runtime.NumGoroutine(); after != before-1 {
			t.Errorf("goroutines %d -> %d after Close: the janitor did not stop", before, after)
		}
	})
}
