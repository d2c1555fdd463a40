package session_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sessionkit/session"
)

// apiClient carries a bearer token between requests, as a mobile app would.
type apiClient struct {
	t     *testing.T
	h     http.Handler
	token string
}

func (c *apiClient) get(target string, extra ...string) *http.Response {
	c.t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for _, v := range extra {
		req.Header.Add("Authorization", v)
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	res := rec.Result()
	if v, ok := res.Header[session.TokenHeader]; ok {
		c.token = v[0]
	}
	return res
}

func TestBearerTokensRotateAndRevokeLikeCookies(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{Bearer: true})
			c := &apiClient{t: t, h: a.h}
			res := c.get("/set?k=k&v=v")
			if c.token == "" || len(res.Header.Values("Set-Cookie")) != 0 || res.Header.Get("Vary") != "Authorization" || res.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("a new session: token %q, Set-Cookie %q, Vary %q, Cache-Control %q", c.token, res.Header.Values("Set-Cookie"), res.Header.Get("Vary"), res.Header.Get("Cache-Control"))
			}
			anon := c.token
			if res := c.get("/login?u=api&k=k"); res.Header.Get("X-User") != "api" || readBody(res) != "v" || c.token == anon {
				t.Fatalf("login: user %q, token rotated %v", res.Header.Get("X-User"), c.token != anon)
			}
			old := &apiClient{t: t, h: a.h, token: anon}
			if res := old.get("/get?k=k"); readBody(res) != "" {
				t.Error("the pre-login token still opens the session")
			}
			if res := c.get("/get?k=k"); res.Header.Get("X-User") != "api" {
				t.Errorf("the new token gives user %q", res.Header.Get("X-User"))
			}
			if _, err := a.m.RevokeAll(t.Context(), "api"); err != nil {
				t.Fatal(err)
			}
			if res := c.get("/get?k=k"); res.Header.Get("X-User") != "" {
				t.Error("a revoked token still works")
			}
		})
	}
}

func TestBearerTokensComeOnlyFromTheAuthorizationHeader(t *testing.T) {
	a := newTestApp(t, session.NewMemoryStore(), session.Options{Bearer: true})
	c := &apiClient{t: t, h: a.h}
	c.get("/login?u=bob")
	tok := c.token

	for name, req := range map[string]*http.Request{
		"in the URL":   httptest.NewRequest(http.MethodGet, "/get?session="+tok+"&access_token="+tok, nil),
		"in a cookie":  addCookie(httptest.NewRequest(http.MethodGet, "/get", nil), &http.Cookie{Name: session.DefaultCookieName, Value: tok}),
		"Basic scheme": withHeader(httptest.NewRequest(http.MethodGet, "/get", nil), "Authorization", "Basic "+tok),
	} {
		rec := httptest.NewRecorder()
		a.h.ServeHTTP(rec, req)
		if got := rec.Result().Header.Get("X-User"); got != "" {
			t.Errorf("a token %s was adopted: user %q", name, got)
		}
	}
	twice := &apiClient{t: t, h: a.h, token: tok}
	if res := twice.get("/get", "Bearer "+tok); res.Header.Get("X-User") != "" {
		t.Error("two bearer tokens were accepted; want them refused as ambiguous")
	}
	c.token = tok
	res := c.get("/logout")
	if v, ok := res.Header[session.TokenHeader]; !ok || v[0] != "" {
		t.Errorf("logout: %s = %q, want present and empty", session.TokenHeader, v)
	}
}

func addCookie(r *http.Request, c *http.Cookie) *http.Request { r.AddCookie(c); return r }

func withHeader(r *http.Request, k, v string) *http.Request { r.Header.Set(k, v); return r }
