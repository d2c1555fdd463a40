package bench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
)

// newRequest returns a GET for path carrying cookie ("name=value", or ""
// for none).
func newRequest(path, cookie string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.com"+path, nil)
	r.RemoteAddr = "192.0.2.1:1234"
	r.Header.Set("User-Agent", "bench/1.0")
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	return r
}

// sessionCookie returns the "name=value" of the cookie named name that h
// sets, or "" if it sets none (or clears it).
func sessionCookie(h http.Header, name string) string {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == name && c.Value != "" && c.MaxAge >= 0 {
			return c.Name + "=" + c.Value
		}
	}
	return ""
}

// serve runs one request through l and returns the recorded response.
func (l *lib) serve(path, cookie string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	l.handler.ServeHTTP(w, newRequest(path, cookie))
	return w
}

// newSession creates a session through the library's "new" scenario and
// returns its cookie, or "" if none was set.
func (l *lib) newSession() string {
	w := l.serve(pathNew, "")
	if w.Code != http.StatusOK {
		return ""
	}
	return sessionCookie(w.Header(), l.cookieName)
}

// sink is a ResponseWriter that keeps the headers and drops the body, reset
// and reused between the benchmarks' requests, so that what is measured is
// the library, not the recorder.
type sink struct {
	h    http.Header
	code int
}

func newSink() *sink { return &sink{h: http.Header{}} }

func (s *sink) Header() http.Header         { return s.h }
func (s *sink) Write(b []byte) (int, error) { return len(b), nil }
func (s *sink) WriteHeader(code int)        { s.code = code }

func (s *sink) reset() {
	clear(s.h)
	s.code = 0
}

func errNoCookie(l *lib) error {
	return fmt.Errorf("bench: %s set no %s cookie", l.name, l.cookieName)
}
