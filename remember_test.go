package session_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/sessionkit/session"
)

func TestRememberMe(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) {
		synctestRun(t, func(t *testing.T) {
			store := session.NewMemoryStore()
			defer store.Close()
			checkRememberMe(t, store, time.Sleep)
		})
	})
	t.Run("redis", func(t *testing.T) {
		clock := newFakeRedis(t)
		checkRememberMe(t, newRedisStore(t, clock.client, session.RedisOptions{}), clock.advance)
	})
}

// checkRememberMe: with browser-session cookies, 10 idle minutes and a
// 1-hour lifetime for ordinary logins, a remembered login gets a
// persistent cookie, 30 days, a week's idle timeout, and keeps all of that
// through Renew; an ordinary login beside it keeps the ordinary terms.
func checkRememberMe(t *testing.T, store session.Store, advance func(time.Duration)) {
	t.Helper()
	a := newTestApp(t, store, session.Options{
		IdleTimeout: 10 * time.Minute, Lifetime: time.Hour,
		RememberLifetime: 30 * 24 * time.Hour, RememberIdleTimeout: 7 * 24 * time.Hour,
		Cookie: session.CookieOptions{SessionOnly: true},
	})
	a.hook = func(w http.ResponseWriter, r *http.Request, s *session.Session) {
		if r.URL.Query().Get("remember") == "1" {
			if err := s.LoginWith(r.Context(), "rita", session.LoginOptions{Remember: true}); err != nil {
				t.Error(err)
			}
		}
	}
	ordinary, remembered := a.client(t), a.client(t)
	if c := sessionCookie(ordinary.get("/login?u=rita"), ordinary.name); c == nil || c.MaxAge != 0 {
		t.Fatalf("an ordinary login's cookie: %+v, want a browser-session cookie", c)
	}
	res := remembered.get("/get?remember=1")
	if c := sessionCookie(res, remembered.name); c == nil || c.MaxAge < 29*24*3600 {
		t.Fatalf("a remembered login's cookie: %+v, want Max-Age of 30 days", c)
	}
	rememberedID := res.Header.Get("X-ID")
	if c := sessionCookie(remembered.get("/renew"), remembered.name); c == nil || c.MaxAge < 29*24*3600 {
		t.Errorf("after Renew the remembered cookie is %+v, want Max-Age of 30 days", c)
	}
	list, err := a.m.Sessions(t.Context(), "rita")
	if err != nil || len(list) != 2 {
		t.Fatalf("Sessions = %v, %v", list, err)
	}
	for _, in := range list {
		if want := in.ID == rememberedID; in.Remembered != want {
			t.Errorf("session %s: Remembered %v, want %v", in.ID, in.Remembered, want)
		}
		if in.Remembered && in.Expires.Sub(in.Created) != 30*24*time.Hour {
			t.Errorf("the remembered session lives %v, want 30 days", in.Expires.Sub(in.Created))
		}
	}
	advance(2 * time.Hour) // past the ordinary idle timeout and lifetime
	if u := ordinary.get("/get").Header.Get("X-User"); u != "" {
		t.Error("the ordinary session outlived its terms")
	}
	if u := remembered.get("/get").Header.Get("X-User"); u != "rita" {
		t.Error("the remembered session ended after 2 idle hours")
	}
	advance(8 * 24 * time.Hour)
	if u := remembered.get("/get").Header.Get("X-User"); u != "" {
		t.Error("the remembered session outlived its 7-day idle timeout")
	}
}
