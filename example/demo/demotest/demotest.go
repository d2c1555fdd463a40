// Package demotest drives the demo app (package demo) over HTTP the way a
// person would, so that the same flow checks the demo on every store: the
// core module's tests run it on MemoryStore, the pgstore module's on
// PostgreSQL.
package demotest

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// Browser is an HTTP client with its own cookie jar and user agent, like
// one browser profile. It is not safe for concurrent use.
type Browser struct {
	t    testing.TB
	base string
	c    *http.Client
	ua   string
}

// NewBrowser returns a browser that sends requests to base (the demo's
// URL, no trailing slash) through c, which it gives a new cookie jar.
func NewBrowser(t testing.TB, base string, c *http.Client, ua string) *Browser {
	jar, _ := cookiejar.New(nil)
	c.Jar = jar
	return &Browser{t: t, base: base, c: c, ua: ua}
}

// Do sends a request (a form if form is not nil), follows redirects, fails
// the test unless the answer is 200 OK, and returns the page.
func (b *Browser) Do(method, path string, form url.Values) string {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("User-Agent", b.ua)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		b.t.Fatalf("%s %s: status %d: %s", method, path, res.StatusCode, body)
	}
	return string(body)
}

// Cookies returns the cookies the browser would send to the demo.
func (b *Browser) Cookies() []*http.Cookie {
	b.t.Helper()
	u, err := url.Parse(b.base)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.c.Jar.Cookies(u)
}

// Find returns the first submatch of pattern in body, failing the test if
// there is none.
func Find(t testing.TB, body, pattern string) string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in:\n%s", pattern, body)
	}
	return m[1]
}

// Flow checks the demo at base from start to end: the visit counter and the
// cart of an anonymous visitor, a refused password, sign in (a new session
// ID, the cart kept), three devices of one user, Revoke of one of them and
// the refusal to revoke this very session, the devices page, "log out
// other devices", and sign out leaving no cookie. newClient returns a new
// client for each browser (its Jar is replaced); the client must keep the
// demo's cookie, so the demo runs over TLS or with -insecure.
func Flow(t testing.TB, base string, newClient func() *http.Client) {
	t.Helper()
	phone := NewBrowser(t, base, newClient(), "demo-phone")
	laptop := NewBrowser(t, base, newClient(), "demo-laptop")

	if v := Find(t, phone.Do("GET", "/", nil), `id="visits">(\d+)<`); v != "1" {
		t.Errorf("first visit counter %s, want 1", v)
	}
	if v := Find(t, phone.Do("GET", "/", nil), `id="visits">(\d+)<`); v != "2" {
		t.Errorf("second visit counter %s, want 2", v)
	}
	home := phone.Do("POST", "/cart", url.Values{"item": {"apples"}})
	if !strings.Contains(home, "<li>apples</li>") {
		t.Errorf("cart lacks apples:\n%s", home)
	}
	anonID := Find(t, home, `id="session-id">([^<]+)<`)

	wrong := phone.Do("POST", "/login", url.Values{"user": {"sam"}, "password": {"nope"}})
	if !strings.Contains(wrong, "the password demo") {
		t.Errorf("a wrong password gave no hint")
	}
	account := phone.Do("POST", "/login", url.Values{"user": {"sam"}, "password": {"demo"}})
	if id, before := Find(t, account, `id="session-id">([^<]+)<`), Find(t, account, `id="id-before">([^<]+)<`); id == anonID || before != anonID {
		t.Errorf("account page: ID %s, before %s; anonymous ID was %s", id, before, anonID)
	}
	if !strings.Contains(phone.Do("GET", "/", nil), "<li>apples</li>") {
		t.Error("the cart did not survive sign-in")
	}
	laptop.Do("POST", "/login", url.Values{"user": {"sam"}, "password": {"demo"}})

	// Revoke ends one device, and only that one.
	tablet := NewBrowser(t, base, newClient(), "demo-tablet")
	tabletID := Find(t, tablet.Do("POST", "/login", url.Values{"user": {"sam"}, "password": {"demo"}}), `id="session-id">([^<]+)<`)
	if got := laptop.Do("POST", "/devices/revoke", url.Values{"id": {tabletID}}); !strings.Contains(got, "Device signed out.") || strings.Contains(got, "demo-tablet") {
		t.Errorf("revoking the tablet:\n%s", got)
	}
	if page := tablet.Do("GET", "/account", nil); !strings.Contains(page, "Sign in first") {
		t.Error("the tablet is still signed in after it was revoked")
	}
	if got := laptop.Do("POST", "/devices/revoke", url.Values{"id": {Find(t, laptop.Do("GET", "/account", nil), `id="session-id">([^<]+)<`)}}); !strings.Contains(got, "To end this session, sign out.") {
		t.Errorf("revoking this very session:\n%s", got)
	}

	devices := laptop.Do("GET", "/devices", nil)
	if !strings.Contains(devices, "demo-phone") || !strings.Contains(devices, "demo-laptop") || strings.Count(devices, "this device") != 1 {
		t.Errorf("devices page lacks a device:\n%s", devices)
	}
	after := laptop.Do("POST", "/devices/logout-others", nil)
	if !strings.Contains(after, "Signed out 1 other device.") {
		t.Errorf("logout-others said:\n%s", after)
	}
	if page := phone.Do("GET", "/account", nil); !strings.Contains(page, "Sign in first") {
		t.Error("the phone is still signed in after 'log out other devices'")
	}
	if out := laptop.Do("POST", "/logout", nil); !strings.Contains(out, `id="signed-out"`) || strings.Contains(out, "Sign out</button>") {
		t.Error("sign out did not sign out")
	}
	if n := len(laptop.Cookies()); n != 0 {
		t.Errorf("after sign out the browser holds %d cookies, want none", n)
	}
}
