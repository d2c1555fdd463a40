package session

import (
	"net/http"
	"net/textproto"
	"strings"
)

// namedCookie returns the first value of the cookies named name in h's
// Cookie headers, and how many there are, as Request.CookiesNamed finds
// them: values unquoted, a cookie whose value holds a byte no cookie value
// may hold left out. It builds no Cookie for each, which every request
// with a session cookie would otherwise pay for (three allocations). name
// is a valid cookie name (CookieOptions.validate), so a name that equals
// it is one.
//
// net/http ignores every cookie of a request that has more than it takes
// (3000 by default, GODEBUG httpcookiemaxnum), a guard on what parsing
// them allocates. This scan allocates nothing; a header of more than
// cookieLimitFallback cookies still goes to net/http, so that its default
// limit applies as before.
func namedCookie(h http.Header, name string) (first string, n int) {
	lines := h["Cookie"]
	count := 0
	for _, line := range lines {
		count += strings.Count(line, ";") + 1
	}
	if count > cookieLimitFallback {
		cookies := (&http.Request{Header: h}).CookiesNamed(name)
		if len(cookies) == 0 {
			return "", 0
		}
		return cookies[0].Value, len(cookies)
	}
	for _, line := range lines {
		line = textproto.TrimString(line)
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = textproto.TrimString(part)
			if part == "" {
				continue
			}
			k, v, _ := strings.Cut(part, "=")
			if textproto.TrimString(k) != name {
				continue
			}
			v, ok := cookieValue(v)
			if !ok {
				continue
			}
			if n == 0 {
				first = v
			}
			n++
		}
	}
	return first, n
}

// cookieLimitFallback is how many cookies namedCookie scans itself: far
// more than a browser sends, below net/http's default limit.
const cookieLimitFallback = 1000

// cookieValue is net/http's parseCookieValue: the value without its
// double quotes, and whether every byte may appear in a cookie value.
func cookieValue(raw string) (string, bool) {
	if len(raw) > 1 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	for i := 0; i < len(raw); i++ {
		if b := raw[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return "", false
		}
	}
	return raw, true
}
