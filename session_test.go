package session_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/sessionkit/session"
)

// A Login, Renew or Logout followed by a failed response: either the store
// did not change, or the browser is told what did.
func TestAFailedResponseAfterLoginOrRenewChangesNothing(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			calls := func(f func()) {
				t.Helper()
				defer func() { _ = recover() }()
				f()
			}

			anon := a.client(t)
			anon.body("/set?k=cart&v=apples")
			before := anon.cookie
			res := anon.get("/login-then-fail?u=alice")
			if res.StatusCode != http.StatusInternalServerError || len(res.Header.Values("Set-Cookie")) != 0 {
				t.Errorf("login then 500: status %d, Set-Cookie %q; want 500 and no cookie", res.StatusCode, res.Header.Values("Set-Cookie"))
			}
			calls(func() { anon.get("/login-then-panic?u=alice") })
			if anon.cookie != before {
				t.Fatal("the browser's cookie changed")
			}
			if got := anon.body("/get?k=cart"); got != "apples" {
				t.Errorf("after a failed login the anonymous cart is %q, want apples", got)
			}
			if list, err := a.m.Sessions(t.Context(), "alice"); err != nil || len(list) != 0 {
				t.Errorf("after failed logins alice has sessions %v (err %v), want none: an orphan", list, err)
			}

			alice := a.client(t)
			alice.get("/login?u=alice")
			id := alice.get("/get").Header.Get("X-ID")
			before = alice.cookie
			alice.get("/renew-then-fail")
			if alice.cookie != before {
				t.Fatal("the browser's cookie changed")
			}
			if res := alice.get("/get"); res.Header.Get("X-User") != "alice" || res.Header.Get("X-ID") != id {
				t.Errorf("after a failed renewal the old cookie gives user %q, ID %q; want alice, %s", res.Header.Get("X-User"), res.Header.Get("X-ID"), id)
			}

			res = alice.get("/logout-then-fail")
			if c := sessionCookie(res, alice.name); c == nil || c.MaxAge >= 0 {
				t.Errorf("a logout followed by a 500 did not clear the cookie (the session is gone): %q", res.Header.Values("Set-Cookie"))
			}
			if list, _ := a.m.Sessions(t.Context(), "alice"); len(list) != 0 {
				t.Errorf("alice still has %d sessions after logging out", len(list))
			}
		})
	}
}

func TestLoginIsVisibleInTheRequestBeforeTheResponseStarts(t *testing.T) {
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	a.hook = func(w http.ResponseWriter, r *http.Request, s *session.Session) {
		if r.URL.Path != "/login" {
			return
		}
		if err := s.Login(r.Context(), "carol"); err != nil {
			t.Fatal(err)
		}
		if s.UserID() != "carol" || s.ID() == "" {
			t.Errorf("right after Login: user %q, ID %q", s.UserID(), s.ID())
		}
		if n, err := s.Incr(r.Context(), "visits", 1); err != nil || n != 1 {
			t.Errorf("Incr after Login: %d, %v", n, err)
		}
	}
	c := a.client(t)
	res := c.get("/login?u=carol&k=visits")
	if got := readBody(res); got != "1" || res.Header.Get("X-User") != "carol" {
		t.Errorf("login response: user %q, visits %q", res.Header.Get("X-User"), got)
	}
	list, err := a.m.Sessions(t.Context(), "carol")
	if err != nil || len(list) != 1 || list[0].ID != res.Header.Get("X-ID") {
		t.Errorf("carol's sessions %v (err %v), want the one with ID %s", list, err, res.Header.Get("X-ID"))
	}
}

func TestNestedManagersEachFindTheirOwnSession(t *testing.T) {
	outer := newTestApp(t, session.NewMemoryStore(), session.Options{Cookie: session.CookieOptions{Name: "outer", Insecure: true}})
	inner := newTestApp(t, session.NewMemoryStore(), session.Options{Cookie: session.CookieOptions{Name: "inner", Insecure: true}})
	h := outer.m.Middleware(inner.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for name, m := range map[string]*session.Manager{"outer": outer.m, "inner": inner.m} {
			s, err := m.Load(r.Context())
			if err != nil {
				t.Errorf("%s Manager's Load: %v", name, err)
				continue
			}
			s.Set("who", name)
		}
	})))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	res := rec.Result()
	for _, name := range []string{"outer", "inner"} {
		if sessionCookie(res, name) == nil {
			t.Errorf("no %q cookie in %q", name, res.Header.Values("Set-Cookie"))
		}
	}
}

// flakyStore fails its first Update, as a store with a passing fault would.
type flakyStore struct {
	session.Store
	failed atomic.Bool
}

func (f *flakyStore) Update(ctx context.Context, k session.Key, c session.Change, p session.Policy) error {
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("passing fault")
	}
	return f.Store.Update(ctx, k, c, p)
}

func TestASaveAnsweredByTheErrorHandlerIsNotSavedLater(t *testing.T) {
	store := &flakyStore{Store: session.NewMemoryStore()}
	a := newTestApp(t, store, session.Options{})
	c := a.client(t)
	c.body("/set?k=k&v=before")
	store.failed.Store(false)
	a.hook = func(w http.ResponseWriter, r *http.Request, s *session.Session) {
		if r.URL.Path == "/write-then-change" {
			s.Set("k", "during")
			w.Write([]byte("the save fails here"))
			s.Set("k", "after")
		}
	}
	if res := c.get("/write-then-change?k=k"); res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d, want the ErrorHandler's 500", res.StatusCode)
	}
	if got := c.body("/get?k=k"); got != "before" {
		t.Errorf("k = %q after a save the ErrorHandler answered, want before: the client was told it failed", got)
	}
}
