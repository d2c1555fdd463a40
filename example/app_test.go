package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/sessionkit/session"
)

func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	store := session.NewMemoryStore()
	t.Cleanup(func() { store.Close() })
	m, err := session.New(session.Options{Store: store, Secrets: [][]byte{[]byte("example app test secret, 32 bytes+")}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(m, appConfig{storeName: "MemoryStore"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(a.routes()) // TLS, so the Secure __Host- cookie is kept by the jar
	t.Cleanup(srv.Close)
	return srv
}

// browser is a client with its own cookie jar and user agent.
type browser struct {
	t   *testing.T
	srv *httptest.Server
	c   *http.Client
	ua  string
}

func newBrowser(t *testing.T, srv *httptest.Server, ua string) *browser {
	jar, _ := cookiejar.New(nil)
	c := *srv.Client() // a copy: srv.Client returns one shared client
	c.Jar = jar
	return &browser{t: t, srv: srv, c: &c, ua: ua}
}

func (b *browser) do(method, path string, form url.Values) string {
	b.t.Helper()
	req, _ := http.NewRequest(method, b.srv.URL+path, strings.NewReader(form.Encode()))
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

func find(t *testing.T, body, pattern string) string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in:\n%s", pattern, body)
	}
	return m[1]
}

func TestTheDemoFlow(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	phone := newBrowser(t, srv, "demo-phone")
	laptop := newBrowser(t, srv, "demo-laptop")

	if v := find(t, phone.do("GET", "/", nil), `id="visits">(\d+)<`); v != "1" {
		t.Errorf("first visit counter %s, want 1", v)
	}
	if v := find(t, phone.do("GET", "/", nil), `id="visits">(\d+)<`); v != "2" {
		t.Errorf("second visit counter %s, want 2", v)
	}
	home := phone.do("POST", "/cart", url.Values{"item": {"apples"}})
	if !strings.Contains(home, "<li>apples</li>") {
		t.Errorf("cart lacks apples:\n%s", home)
	}
	anonID := find(t, home, `id="session-id">([^<]+)<`)

	wrong := phone.do("POST", "/login", url.Values{"user": {"sam"}, "password": {"nope"}})
	if !strings.Contains(wrong, "the password demo") {
		t.Errorf("a wrong password gave no hint")
	}
	account := phone.do("POST", "/login", url.Values{"user": {"sam"}, "password": {"demo"}})
	if id, before := find(t, account, `id="session-id">([^<]+)<`), find(t, account, `id="id-before">([^<]+)<`); id == anonID || before != anonID {
		t.Errorf("account page: ID %s, before %s; anonymous ID was %s", id, before, anonID)
	}
	if !strings.Contains(phone.do("GET", "/", nil), "<li>apples</li>") {
		t.Error("the cart did not survive sign-in")
	}
	laptop.do("POST", "/login", url.Values{"user": {"sam"}, "password": {"demo"}})

	// Revoke ends one device, and only that one.
	tablet := newBrowser(t, srv, "demo-tablet")
	tabletID := find(t, tablet.do("POST", "/login", url.Values{"user": {"sam"}, "password": {"demo"}}), `id="session-id">([^<]+)<`)
	if got := laptop.do("POST", "/devices/revoke", url.Values{"id": {tabletID}}); !strings.Contains(got, "Device signed out.") || strings.Contains(got, "demo-tablet") {
		t.Errorf("revoking the tablet:\n%s", got)
	}
	if page := tablet.do("GET", "/account", nil); !strings.Contains(page, "Sign in first") {
		t.Error("the tablet is still signed in after it was revoked")
	}
	if got := laptop.do("POST", "/devices/revoke", url.Values{"id": {find(t, laptop.do("GET", "/account", nil), `id="session-id">([^<]+)<`)}}); !strings.Contains(got, "To end this session, sign out.") {
		t.Errorf("revoking this very session:\n%s", got)
	}

	devices := laptop.do("GET", "/devices", nil)
	if !strings.Contains(devices, "demo-phone") || !strings.Contains(devices, "demo-laptop") || strings.Count(devices, "this device") != 1 {
		t.Errorf("devices page lacks a device:\n%s", devices)
	}
	after := laptop.do("POST", "/devices/logout-others", nil)
	if !strings.Contains(after, "Signed out 1 other device.") {
		t.Errorf("logout-others said:\n%s", after)
	}
	if page := phone.do("GET", "/account", nil); !strings.Contains(page, "Sign in first") {
		t.Error("the phone is still signed in after 'log out other devices'")
	}
	if out := laptop.do("POST", "/logout", nil); !strings.Contains(out, `id="signed-out"`) || strings.Contains(out, "Sign out</button>") {
		t.Error("sign out did not sign out")
	}
	if n := len(laptop.c.Jar.Cookies(mustParse(t, srv.URL))); n != 0 {
		t.Errorf("after sign out the browser holds %d cookies, want none", n)
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestCrossSiteFormsAreRefused(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	req, _ := http.NewRequest("POST", srv.URL+"/logout", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: status %d, want 403", res.StatusCode)
	}
}

func TestDeviceNamesAreReadable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ua, want string
	}{
		{"Chrome on Linux", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Chrome on Linux"},
		{"headless Chromium", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36", "Headless Chrome on Linux"},
		{"Edge is not called Chrome", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "Edge on Windows"},
		{"Firefox on macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on macOS"},
		{"Safari on iPhone is not called macOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1", "Safari on iPhone"},
		{"Chrome on Android is not called Linux", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome on Android"},
		{"curl", "curl/8.5.0", "curl"},
		{"nothing known", "", "Unknown device"},
	}
	for _, tt := range tests {
		if got := deviceName(tt.ua); got != tt.want {
			t.Errorf("%s: deviceName = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestOnlyLoopbackHostsCountAsLocal(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"localhost:8080": true, "localhost": true, "app.localhost:8080": true,
		"127.0.0.1:8080": true, "[::1]:8080": true, "127.8.9.10": true,
		"192.168.1.20:8080": false, "example.com": false, "localhost.example.com:80": false, "": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestAPlainHTTPNonLocalHostIsWarnedAboutTheSecureCookie(t *testing.T) {
	t.Parallel()
	store := session.NewMemoryStore()
	t.Cleanup(func() { store.Close() })
	m, err := session.New(session.Options{Store: store, Secrets: [][]byte{[]byte("example app test secret, 32 bytes+")}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(m, appConfig{storeName: "MemoryStore"})
	if err != nil {
		t.Fatal(err)
	}
	for host, warned := range map[string]bool{"localhost:8080": false, "192.168.1.20:8080": true} {
		req := httptest.NewRequest("GET", "http://"+host+"/login", nil)
		rec := httptest.NewRecorder()
		a.routes().ServeHTTP(rec, req)
		if got := strings.Contains(rec.Body.String(), "will not keep the Secure session cookie"); got != warned {
			t.Errorf("GET http://%s/login: warned %v, want %v", host, got, warned)
		}
	}
}

func TestABrowserThatDropsTheSecureCookieIsToldWhy(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	tests := []struct {
		name    string
		referer string
		cookie  bool
		warned  bool
	}{
		{"from the home page without the cookie", "/", false, true},
		{"from the home page with the cookie", "/", true, false},
		{"a first visit", "", false, false},
		{"from the signed-out page", "/signed-out", false, false},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", srv.URL+"/login", nil)
		if tt.referer != "" {
			req.Header.Set("Referer", srv.URL+tt.referer)
		}
		if tt.cookie {
			req.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: "whatever"})
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if got := strings.Contains(string(body), "did not send back the session cookie"); got != tt.warned {
			t.Errorf("%s: warned %v, want %v", tt.name, got, tt.warned)
		}
	}
}

func TestRememberMeShowsOnTheDevicesPage(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	remembered := newBrowser(t, srv, "demo-remembered")
	ordinary := newBrowser(t, srv, "demo-ordinary")
	remembered.do("POST", "/login", url.Values{"user": {"rae"}, "password": {"demo"}, "remember": {"1"}})
	ordinary.do("POST", "/login", url.Values{"user": {"rae"}, "password": {"demo"}})
	page := ordinary.do("GET", "/devices", nil)
	if n := strings.Count(page, `<span class="badge">remembered</span>`); n != 1 {
		t.Errorf("%d sessions marked remembered, want 1:\n%s", n, page)
	}
}
