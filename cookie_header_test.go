package session

import (
	"net/http"
	"strings"
	"testing"
)

// cookiesNamedByNetHTTP is what namedCookie must agree with.
func cookiesNamedByNetHTTP(lines []string, name string) (string, int) {
	r := &http.Request{Header: http.Header{"Cookie": lines}}
	cookies := r.CookiesNamed(name)
	if len(cookies) == 0 {
		return "", 0
	}
	return cookies[0].Value, len(cookies)
}

func TestNamedCookieFindsWhatNetHTTPFinds(t *testing.T) {
	many := strings.Repeat("junk=1; ", 1500) + "s=late"
	tooMany := strings.Repeat("junk=1; ", 3000) + "s=hidden"
	for _, tc := range []struct {
		lines     []string
		wantFirst string
		wantN     int
	}{
		{nil, "", 0},
		{[]string{""}, "", 0},
		{[]string{"s=abc"}, "abc", 1},
		{[]string{"  s=abc  "}, "abc", 1},
		{[]string{"a=1; s=abc; b=2"}, "abc", 1},
		{[]string{"a=1;s=abc;b=2"}, "abc", 1},
		{[]string{`s="abc"`}, "abc", 1},
		{[]string{`s="abc`}, "", 0}, // a lone quote is not a value byte
		{[]string{`s=a"b`}, "", 0},
		{[]string{"s=a\\b"}, "", 0},
		{[]string{"s=a b"}, "a b", 1}, // space is a value byte to net/http
		{[]string{"s=a\x7fb"}, "", 0},
		{[]string{"s=a,b"}, "a,b", 1},
		{[]string{"s="}, "", 1},
		{[]string{"s"}, "", 1},
		{[]string{" s =abc"}, "abc", 1},
		{[]string{"S=abc"}, "", 0}, // names are case-sensitive
		{[]string{"s=one; s=two"}, "one", 2},
		{[]string{"s=one", "a=1; s=two"}, "one", 2},
		{[]string{"s=bad\\; s=good"}, "good", 1}, // an invalid one is left out, not counted
		{[]string{"; ; s=abc;;"}, "abc", 1},
		{[]string{many}, "late", 1}, // past the scan's own limit: net/http parses it
		{[]string{tooMany}, "", 0},  // past net/http's: no cookie at all
	} {
		first, n := namedCookie(http.Header{"Cookie": tc.lines}, "s")
		if first != tc.wantFirst || n != tc.wantN {
			t.Errorf("%.60q: namedCookie = %q, %d; want %q, %d", tc.lines, first, n, tc.wantFirst, tc.wantN)
		}
		if f, m := cookiesNamedByNetHTTP(tc.lines, "s"); f != first || m != n {
			t.Errorf("%.60q: namedCookie = %q, %d; net/http finds %q, %d", tc.lines, first, n, f, m)
		}
	}
}

// FuzzNamedCookie checks namedCookie against net/http on any Cookie
// header: the session must be found exactly when net/http would find it.
func FuzzNamedCookie(f *testing.F) {
	f.Add("a=1; __Host-session=abc", "x=\"y\"", "__Host-session")
	f.Add("s=\"q\"; s=w", "", "s")
	f.Add(" \t s = v ;\r\n", "s=\x00", "s")
	f.Fuzz(func(t *testing.T, line1, line2, name string) {
		if (&http.Cookie{Name: name, Value: "x"}).Valid() != nil {
			return // the Manager refuses such a name
		}
		lines := []string{line1}
		if line2 != "" {
			lines = append(lines, line2)
		}
		first, n := namedCookie(http.Header{"Cookie": lines}, name)
		if f, m := cookiesNamedByNetHTTP(lines, name); f != first || m != n {
			t.Fatalf("%q, name %q: namedCookie = %q, %d; net/http finds %q, %d", lines, name, first, n, f, m)
		}
	})
}
