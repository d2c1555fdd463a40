package demo

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/example/demo/demotest"
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

// newClient returns a client of srv's with a jar of its own to come.
func newClient(srv *httptest.Server) func() *http.Client {
	return func() *http.Client {
		c := *srv.Client() // a copy: srv.Client returns one shared client
		return &c
	}
}

func TestTheDemoFlow(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	demotest.Flow(t, srv.URL, newClient(srv))
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
	remembered := demotest.NewBrowser(t, srv.URL, newClient(srv)(), "demo-remembered")
	ordinary := demotest.NewBrowser(t, srv.URL, newClient(srv)(), "demo-ordinary")
	remembered.Do("POST", "/login", url.Values{"user": {"rae"}, "password": {"demo"}, "remember": {"1"}})
	ordinary.Do("POST", "/login", url.Values{"user": {"rae"}, "password": {"demo"}})
	page := ordinary.Do("GET", "/devices", nil)
	if n := strings.Count(page, `<span class="badge">remembered</span>`); n != 1 {
		t.Errorf("%d sessions marked remembered, want 1:\n%s", n, page)
	}
}
