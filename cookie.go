package session

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/securecookie"
)

const (
	tokenBytes = 32 // 256 bits from crypto/rand
	// maxCookieValue bounds what the codec accepts before any base64 or HMAC
	// work, and what it may produce: browsers keep 4096 bytes per cookie.
	maxCookieValue = 4096
	// payloadVersion leads the payload, so a later format can be told apart.
	payloadVersion byte = 1
	// clockSkew is how far past Lifetime a cookie's signed timestamp may be.
	clockSkew = 5 * time.Minute
)

// token is the secret a cookie carries. Only its hash reaches a store.
type token [tokenBytes]byte

func newToken() (token, error) {
	var t token
	if _, err := rand.Read(t[:]); err != nil {
		return t, fmt.Errorf("session: reading random token: %w", err)
	}
	return t, nil
}

// hash is the store's name for the session: base64url SHA-256 of the token,
// so a leaked key or log line cannot be turned back into a cookie.
func (t token) hash() string {
	sum := sha256.Sum256(t[:])
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// cookieCodec signs and encrypts (userID, token) into a cookie value, with
// keys derived by HKDF from each secret. No gob: the payload is
// version byte | 32-byte token | user ID bytes.
type cookieCodec struct {
	name    string
	codecs  []*securecookie.SecureCookie // newest secret first
	logKey  []byte                       // keys the token hash in log lines
	maxAge  time.Duration
	options CookieOptions
	// verified remembers what decode found; now is its clock for MaxAge.
	verified *verifiedCookies
	now      func() time.Time
}

func newCookieCodec(secrets [][]byte, opts CookieOptions, lifetime time.Duration) (*cookieCodec, error) {
	cc := &cookieCodec{name: opts.Name, options: opts, maxAge: lifetime + clockSkew, verified: newVerifiedCookies(), now: time.Now}
	for i, secret := range secrets {
		hashKey, err := hkdf.Key(sha256.New, secret, nil, "sessionkit/session v1 cookie hmac-sha256", 32)
		if err != nil {
			return nil, fmt.Errorf("session: deriving key %d: %w", i, err)
		}
		blockKey, err := hkdf.Key(sha256.New, secret, nil, "sessionkit/session v1 cookie aes-256", 32)
		if err != nil {
			return nil, fmt.Errorf("session: deriving key %d: %w", i, err)
		}
		if i == 0 {
			if cc.logKey, err = hkdf.Key(sha256.New, secret, nil, "sessionkit/session v1 log token hash", 32); err != nil {
				return nil, fmt.Errorf("session: deriving key %d: %w", i, err)
			}
		}
		sc := securecookie.New(hashKey, blockKey).
			SetSerializer(securecookie.NopEncoder{}).
			MaxLength(maxCookieValue).
			MaxAge(int(cc.maxAge / time.Second))
		cc.codecs = append(cc.codecs, sc)
	}
	// The longest cookie the codec can be asked for must fit a browser's
	// limit; refusing here beats answering 500 to every login.
	if _, err := cc.encode(strings.Repeat("u", MaxUserIDLength), token{}); err != nil {
		return nil, fmt.Errorf("%w: cookie: name %d bytes long leaves no room for the value: %v", ErrInvalidOptions, len(opts.Name), err)
	}
	return cc, nil
}

var strictBase64 = base64.URLEncoding.Strict()

// errCookie is what every decode failure becomes: the caller treats the
// request as anonymous and needs no more detail than that.
var errCookie = errors.New("session: invalid cookie")

// encode returns the cookie value for a session, signed with the newest secret.
func (cc *cookieCodec) encode(userID string, t token) (string, error) {
	payload := make([]byte, 0, 1+tokenBytes+len(userID))
	payload = append(payload, payloadVersion)
	payload = append(payload, t[:]...)
	payload = append(payload, userID...)
	v, err := cc.codecs[0].Encode(cc.name, payload)
	if err != nil {
		return "", fmt.Errorf("session: encoding cookie: %w", err)
	}
	if len(cc.name)+len(v) > maxCookieValue {
		return "", fmt.Errorf("session: cookie would be %d bytes, browsers keep %d", len(cc.name)+len(v), maxCookieValue)
	}
	return v, nil
}

// decode verifies and opens a cookie value, or finds it among the values
// it verified before. stale reports that an older secret opened it, so the
// caller re-issues it with the newest.
func (cc *cookieCodec) decode(value string) (verifiedCookie, error) {
	if len(value) == 0 || len(value) > maxCookieValue {
		return verifiedCookie{}, errCookie
	}
	if c, ok := cc.verified.get(value); ok {
		if c.signed < cc.now().Unix()-int64(cc.maxAge/time.Second) {
			cc.verified.forget(value)
			return verifiedCookie{}, errCookie // as securecookie's MaxAge check
		}
		return c, nil
	}
	c, err := cc.open(value)
	if err == nil {
		cc.verified.put(value, c)
	}
	return c, err
}

// open is decode without the memory: securecookie's checks, then ours.
func (cc *cookieCodec) open(value string) (verifiedCookie, error) {
	// securecookie's decoder ignores base64 padding bits, so several strings
	// open to one cookie; accept only the one we wrote.
	var raw [maxCookieValue]byte
	n, err := strictBase64.Decode(raw[:], []byte(value))
	if err != nil {
		return verifiedCookie{}, errCookie
	}
	for i, sc := range cc.codecs {
		var payload []byte
		if sc.Decode(cc.name, value, &payload) != nil {
			continue
		}
		if len(payload) < 1+tokenBytes || payload[0] != payloadVersion {
			return verifiedCookie{}, errCookie
		}
		// securecookie's format is "date|value|mac", the date in decimal
		// Unix seconds; it has just checked that date.
		date, _, _ := bytes.Cut(raw[:n], []byte("|"))
		signed, err := strconv.ParseInt(string(date), 10, 64)
		if err != nil {
			return verifiedCookie{}, errCookie
		}
		c := verifiedCookie{userID: string(payload[1+tokenBytes:]), stale: i > 0, signed: signed}
		copy(c.tok[:], payload[1:1+tokenBytes])
		if c.userID != "" && ValidateUserID(c.userID) != nil {
			return verifiedCookie{}, errCookie
		}
		c.hash = c.tok.hash()
		return c, nil
	}
	return verifiedCookie{}, errCookie
}

// cookie builds the Set-Cookie for a live session ending at expires. A
// remembered session's cookie outlives the browser whatever SessionOnly says.
func (cc *cookieCodec) cookie(value string, expires, now time.Time, remembered bool) *http.Cookie {
	c := cc.base(value)
	if remembered || !cc.options.SessionOnly {
		c.MaxAge = max(1, int(expires.Sub(now).Round(time.Second)/time.Second))
	}
	return c
}

// expired builds the Set-Cookie that makes the browser drop the cookie: same
// name, path and domain, Max-Age=0.
func (cc *cookieCodec) expired() *http.Cookie {
	c := cc.base("")
	c.MaxAge = -1 // net/http writes Max-Age=0
	return c
}

// setCookieHeaders adds c to h with the header every response that sets
// the session cookie needs: no cache may keep it.
func setCookieHeaders(h http.Header, c *http.Cookie) {
	h.Add("Set-Cookie", c.String())
	h.Set("Cache-Control", "no-store")
}

// varyCookie tells caches that a response read a session, so it may differ
// from one cookie (or, with bearer tokens, one Authorization header) to
// the next and must not be served to another client.
func varyCookie(h http.Header, bearer bool) {
	header := "Cookie"
	if bearer {
		header = "Authorization"
	}
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f == "*" || strings.EqualFold(f, header) {
				return
			}
		}
	}
	h.Add("Vary", header)
}

func (cc *cookieCodec) base(value string) *http.Cookie {
	return &http.Cookie{
		Name:     cc.name,
		Value:    value,
		Path:     cc.options.Path,
		Domain:   cc.options.Domain,
		Secure:   !cc.options.Insecure,
		HttpOnly: true,
		SameSite: cc.options.SameSite,
	}
}

// logHash names a token (or a rejected cookie) in log lines: keyed, so it
// cannot be matched against store keys, and short, since it only has to
// correlate events.
func (cc *cookieCodec) logHash(b []byte) string {
	m := hmac.New(sha256.New, cc.logKey)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// validHash reports whether h has the form token.hash returns, so that
// nothing else is ever built into a store key.
func validHash(h string) bool {
	if len(h) != 43 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if !base64URL[h[i]] {
			return false
		}
	}
	return true
}

// base64URL marks the bytes of the unpadded base64url alphabet. Every
// store call checks its key with it, so it is a table, not a chain of
// comparisons.
var base64URL = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = true
	}
	return t
}()
