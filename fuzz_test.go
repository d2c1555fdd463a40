package session

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func fuzzCodec(t testing.TB) *cookieCodec {
	t.Helper()
	opts := CookieOptions{}
	if err := opts.validate(); err != nil {
		t.Fatal(err)
	}
	cc, err := newCookieCodec([][]byte{[]byte("fuzzing secret, at least 32 bytes long")}, opts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// FuzzDecodeCookie: whatever arrives as a cookie, decoding never panics,
// stays within bounded allocations, and opens only what this codec sealed.
func FuzzDecodeCookie(f *testing.F) {
	cc := fuzzCodec(f)
	valid, err := cc.encode("alice", token{1, 2, 3})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{"", " ", "\n", "||", "|||", "cookie", valid, valid[:len(valid)/2], valid + "A", strings.Repeat("A", 4097)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := cc.decode(raw)
		if err != nil {
			return
		}
		userID, tok := c.userID, c.tok
		// The only payload this codec ever sealed is (alice, {1,2,3}); opening
		// anything else would be a forgery. (Each fuzz worker seals its own
		// copy, with its own IV and timestamp, so raw itself may differ.)
		if userID != "alice" || tok != (token{1, 2, 3}) {
			t.Fatalf("a value that was not issued opened as user %q", userID)
		}
	})
}

// FuzzCookieRoundTrip: encode then decode is the identity.
func FuzzCookieRoundTrip(f *testing.F) {
	cc := fuzzCodec(f)
	f.Add("", []byte{1})
	f.Add("alice", []byte{0xff, 0})
	f.Add("{a}:*\n\x00\xff", bytes.Repeat([]byte{7}, 32))
	f.Fuzz(func(t *testing.T, userID string, tokBytes []byte) {
		if userID != "" && ValidateUserID(userID) != nil {
			return
		}
		var tok token
		copy(tok[:], tokBytes)
		v, err := cc.encode(userID, tok)
		if err != nil {
			t.Fatalf("encode(%q): %v", userID, err)
		}
		for _, pass := range []string{"first decode", "decode from memory"} {
			c, err := cc.decode(v)
			if err != nil || c.userID != userID || c.tok != tok || c.stale || c.hash != tok.hash() {
				t.Fatalf("%s of %q: got %q, token equal %v, stale %v, err %v", pass, userID, c.userID, c.tok == tok, c.stale, err)
			}
		}
	})
}

// FuzzUserTag: distinct user IDs never share a key prefix, and neither's
// prefix starts the other's, so no user's keys can match another's pattern.
func FuzzUserTag(f *testing.F) {
	s, err := NewRedisStore(redis.NewClient(&redis.Options{}), RedisOptions{}) // no I/O
	if err != nil {
		f.Fatal(err)
	}
	f.Add("a", "ab")
	f.Add("a*", "a")
	f.Add("a}b", "a")
	f.Add("{x}", "x")
	f.Add("A", "a")
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == b || ValidateUserID(a) != nil || ValidateUserID(b) != nil {
			return
		}
		pa, pb := s.userPrefix(a), s.userPrefix(b)
		if strings.HasPrefix(pa, pb) || strings.HasPrefix(pb, pa) {
			t.Fatalf("prefixes of %q and %q overlap: %q, %q", a, b, pa, pb)
		}
		if strings.ContainsAny(userTag(a), "{}*:?[]\\") {
			t.Fatalf("tag of %q has a special character: %q", a, userTag(a))
		}
	})
}

// FuzzParseHash: whatever a Redis hash holds, reading it never panics and
// yields either ErrNotFound or a complete record.
func FuzzParseHash(f *testing.F) {
	f.Add("@id\x00x\x00@u\x00\x00@c\x001\x00@s\x001\x00@x\x002\x00v:a\x00b")
	f.Add("@id\x00x\x00@c\x00nope")
	f.Add("odd")
	f.Fuzz(func(t *testing.T, flat string) {
		parts := strings.Split(flat, "\x00")
		list := make([]any, len(parts))
		for i, p := range parts {
			list[i] = p
		}
		rec, err := parseHash(Key{}, list)
		if err != nil {
			return
		}
		if rec.ID == "" || rec.Created.IsZero() && rec.Expires.IsZero() && rec.LastSeen.IsZero() {
			t.Fatalf("an incomplete record was accepted: %+v", rec)
		}
	})
}

// FuzzParseCounter: a stored value is an integer for Incr exactly when it
// is the canonical decimal form of an int64, which is what Redis's
// string2ll accepts: no sign but '-', no leading zeros, no "-0", no spaces.
func FuzzParseCounter(f *testing.F) {
	for _, seed := range []string{"0", "-1", "42", "05", "+5", "-0", " 5", "", "9223372036854775807", "-9223372036854775808", "9223372036854775808"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, ok := parseCounter(v)
		canonical, err := strconv.ParseInt(v, 10, 64)
		want := err == nil && strconv.FormatInt(canonical, 10) == v
		if ok != want || ok && n != canonical {
			t.Fatalf("parseCounter(%q) = %d, %v; want %d, %v", v, n, ok, canonical, want)
		}
	})
}

func TestCookieDecodingAllocatesLittle(t *testing.T) {
	cc := fuzzCodec(t)
	valid, _ := cc.encode("alice", token{1})
	for name, v := range map[string]string{"valid": valid, "4 KiB of junk": strings.Repeat("A", 4096), "1 MiB": strings.Repeat("A", 1<<20)} {
		allocs := testing.AllocsPerRun(20, func() { cc.decode(v) })
		if allocs > 20 {
			t.Errorf("%s: %.0f allocations per decode, want at most 20", name, allocs)
		}
	}
}

func TestSecretsAreComparedInConstantTime(t *testing.T) {
	t.Parallel()
	// The only MAC check is securecookie's, which uses subtle.ConstantTimeCompare;
	// this package must not add a variable-time comparison of secret material.
	for _, file := range []string{"cookie.go", "session.go", "middleware.go", "store_redis.go", "store_memory.go"} {
		src := readSource(t, file)
		for _, bad := range []string{"bytes.Equal(", "reflect.DeepEqual("} {
			if strings.Contains(src, bad) {
				t.Errorf("%s uses %s; compare secret material with hmac.Equal or subtle", file, bad)
			}
		}
	}
}

func readSource(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
