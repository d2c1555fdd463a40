package session_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sessionkit/session"
)

// storeKind is a store the adversarial table runs against, with a way to
// move its clock.
type storeKind struct {
	name string
	run  func(t *testing.T, f func(t *testing.T))
	open func(t *testing.T) (session.Store, func(time.Duration))
}

var storeKinds = []storeKind{
	{"memory", synctest.Test, func(t *testing.T) (session.Store, func(time.Duration)) {
		s := session.NewMemoryStore()
		t.Cleanup(func() { s.Close() })
		return s, time.Sleep // fake time inside the bubble
	}},
	{"redis", func(t *testing.T, f func(t *testing.T)) { f(t) }, func(t *testing.T) (session.Store, func(time.Duration)) {
		fake := newFakeRedis(t)
		return newRedisStore(t, fake.client, session.RedisOptions{}), fake.advance
	}},
}

// victim is a fresh app in which "victim" has signed in and stored a=1.
type victim struct {
	t       *testing.T
	a       *testApp
	c       *client
	cookie  string // the victim's live cookie
	advance func(time.Duration)
}

// withCookie is a request for /get?k=a carrying a raw Cookie header.
func withCookie(header string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/get?k=a", nil)
	if header != "" {
		req.Header.Set("Cookie", header)
	}
	return req
}

func named(value string) string { return session.DefaultCookieName + "=" + value }

// replayAfter returns an attack that replays the victim's cookie after the
// victim's own request to target.
func replayAfter(target string) func(v *victim) *http.Request {
	return func(v *victim) *http.Request {
		old := v.cookie
		v.c.get(target)
		return withCookie(named(old))
	}
}

// forgedElsewhere is a cookie that this app's secret signed, for a session
// this app's store never held.
func forgedElsewhere(t *testing.T) string {
	other := newTestApp(t, session.NewMemoryStore(), session.Options{})
	return validCookie(t, other)
}

func adversarialCases(good string) []struct {
	name     string
	attack   func(v *victim) *http.Request
	maxCalls int64  // store calls the attack may cost
	wantUser string // "" is anonymous
	check    func(v *victim, res *http.Response)
} {
	type row = struct {
		name     string
		attack   func(v *victim) *http.Request
		maxCalls int64
		wantUser string
		check    func(v *victim, res *http.Response)
	}
	raw := func(value string) func(*victim) *http.Request {
		return func(*victim) *http.Request { return withCookie(named(value)) }
	}
	rows := []row{
		{name: "an empty cookie is anonymous", attack: raw("")},
		{name: "a whitespace cookie is anonymous", attack: raw(" ")},
		{name: "a cookie of bars is anonymous", attack: raw("||")},
		{name: "a cookie of three bars is anonymous", attack: raw("|||")},
		{name: "a plain word is anonymous", attack: raw("cookie")},
		{name: "text that is not base64 is anonymous", attack: raw("%%%not*base64%%%")},
		{name: "standard base64 of bars is anonymous", attack: raw(base64.StdEncoding.EncodeToString([]byte("a|b|c")))},
		{name: "URL base64 of bars is anonymous", attack: raw(base64.URLEncoding.EncodeToString([]byte("a|b|c")))},
		{name: "a truncated cookie is anonymous", attack: raw(good[:len(good)-4])},
		{name: "an extended cookie is anonymous", attack: raw(good + "AAAA")},
		{name: "a reversed cookie is anonymous", attack: raw(reverse(good))},
		{name: "a cookie of 4097 bytes is anonymous", attack: raw(strings.Repeat("A", 4097))},
		{name: "a cookie of 64 KiB is anonymous", attack: raw(strings.Repeat("A", 64<<10))},
		{name: "a 1 MB cookie header costs bounded work and is anonymous", attack: raw(strings.Repeat("A", 1<<20))},
		{name: "a cookie from another application's secret is anonymous", attack: func(v *victim) *http.Request {
			other := newTestApp(v.t, session.NewMemoryStore(), session.Options{Secrets: [][]byte{[]byte("another application's secret, 32+ bytes")}})
			return withCookie(named(validCookie(v.t, other)))
		}},
		{name: "a cookie signed for another cookie name is anonymous", attack: func(v *victim) *http.Request {
			csrf := newTestApp(v.t, session.NewMemoryStore(), session.Options{Cookie: session.CookieOptions{Name: "__Host-csrf"}})
			c := csrf.client(v.t)
			c.name = "__Host-csrf"
			c.body("/set?k=a&v=1")
			return withCookie(named(c.cookie))
		}},
		{name: "two cookies with the session's name are refused as ambiguous", attack: func(v *victim) *http.Request {
			return withCookie(named(v.cookie) + "; " + named(v.cookie))
		}},
		{name: "a planted second cookie beside the victim's is refused as ambiguous", attack: func(v *victim) *http.Request {
			return withCookie(named(forgedElsewhere(v.t)) + "; " + named(v.cookie))
		}},
		{name: "a token in the URL or a header is ignored", attack: func(v *victim) *http.Request {
			req := httptest.NewRequest(http.MethodGet, "/get?k=a&session="+v.cookie+"&"+session.DefaultCookieName+"="+v.cookie, nil)
			req.Header.Set("Authorization", "Bearer "+v.cookie)
			req.Header.Set("X-Session", v.cookie)
			return req
		}},
		{name: "10000 other cookies beside the session cookie hide it (net/http parses at most 3000)", maxCalls: 1,
			attack: func(v *victim) *http.Request { return withCookie(strings.Repeat("a=; ", 10000) + named(v.cookie)) }},
		{name: "1000 other cookies beside the session cookie cost one store call", maxCalls: 1, wantUser: "victim",
			attack: func(v *victim) *http.Request { return withCookie(strings.Repeat("a=; ", 1000) + named(v.cookie)) }},
		{name: "a cookie replayed after logout is anonymous", maxCalls: 1, attack: replayAfter("/logout")},
		{name: "a cookie replayed after Renew is anonymous", maxCalls: 1, attack: replayAfter("/renew")},
		{name: "a cookie replayed after a new login is anonymous", maxCalls: 1, attack: replayAfter("/login?u=victim")},
		{name: "a cookie replayed after RevokeAll is anonymous", maxCalls: 1, attack: func(v *victim) *http.Request {
			if _, err := v.a.m.RevokeAll(v.t.Context(), "victim"); err != nil {
				v.t.Fatal(err)
			}
			return withCookie(named(v.cookie))
		}},
		{name: "a cookie past the absolute lifetime is anonymous", maxCalls: 1, attack: func(v *victim) *http.Request {
			v.advance(61 * time.Minute)
			return withCookie(named(v.cookie))
		}},
		{name: "a signed cookie for a session never issued is not adopted: a fresh token is issued", maxCalls: 2,
			attack: func(v *victim) *http.Request {
				req := httptest.NewRequest(http.MethodGet, "/set?k=planted&v=attacker", nil)
				req.Header.Set("Cookie", named(forgedElsewhere(v.t)))
				return req
			},
			check: func(v *victim, res *http.Response) {
				planted := strings.TrimPrefix(res.Request.Header.Get("Cookie"), session.DefaultCookieName+"=")
				issued := sessionCookie(res, session.DefaultCookieName)
				if issued == nil || issued.Value == planted || issued.MaxAge <= 0 {
					v.t.Fatalf("want a fresh cookie, got %v", issued)
				}
				again := v.a.client(v.t)
				again.cookie = planted
				if got := again.body("/get?k=planted"); got != "" {
					v.t.Errorf("the planted token was adopted: it reads %q", got)
				}
			}},
	}
	for i := range len(good) {
		b := []byte(good)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		rows = append(rows, row{name: fmt.Sprintf("a cookie with character %d changed is anonymous", i), attack: raw(string(b))})
	}
	return rows
}

func TestAdversarialRequestsGetAnAnonymousSessionAndNo5xx(t *testing.T) {
	t.Parallel()
	probe := newTestApp(t, session.NewMemoryStore(), session.Options{})
	good := validCookie(t, probe) // only its shape matters for the mutations
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			for _, tc := range adversarialCases(good) {
				t.Run(tc.name, func(t *testing.T) {
					kind.run(t, func(t *testing.T) {
						store, advance := kind.open(t)
						a := newTestApp(t, store, session.Options{IdleTimeout: time.Hour, Lifetime: time.Hour})
						c := a.client(t)
						c.get("/login?u=victim")
						c.body("/set?k=a&v=1")
						v := &victim{t: t, a: a, c: c, cookie: c.cookie, advance: advance}

						req := tc.attack(v)
						before := a.store.calls.Load()
						rec := httptest.NewRecorder()
						a.h.ServeHTTP(rec, req)
						res := rec.Result()
						res.Request = req
						if n := a.store.calls.Load() - before; n > tc.maxCalls {
							t.Errorf("%d store calls, want at most %d", n, tc.maxCalls)
						}
						if res.StatusCode != http.StatusOK {
							t.Errorf("status %d, want 200", res.StatusCode)
						}
						if got := res.Header.Get("X-User"); got != tc.wantUser {
							t.Errorf("user %q, want %q", got, tc.wantUser)
						}
						if tc.wantUser == "" && rec.Body.String() == "1" { // the victim's a=1
							t.Errorf("an anonymous request read the victim's data: %q", rec.Body)
						}
						if tc.check != nil {
							tc.check(v, res)
						}
					})
				})
			}
		})
	}
}

func TestTooLargeAHeaderGets431(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	srv := httptest.NewServer(a.h)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/get", nil)
	req.Header.Set("Cookie", named(strings.Repeat("A", 2<<20)))
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", res.StatusCode)
	}
	if n := a.store.calls.Load(); n != 0 {
		t.Errorf("%d store calls, want 0", n)
	}
}
