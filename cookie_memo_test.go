package session

import (
	"fmt"
	"testing"
	"time"
	"unsafe"
)

func TestARememberedCookieExpiresWhenSecurecookieWouldRefuseIt(t *testing.T) {
	t.Parallel()
	cc := fuzzCodec(t)
	v := encoded(t, cc, "alice", token{9})
	if _, err := cc.decode(v); err != nil {
		t.Fatalf("a fresh cookie: %v", err)
	}
	if _, ok := cc.verified.get(v); !ok {
		t.Fatal("a cookie that verified was not remembered")
	}
	start := time.Now()
	cc.now = func() time.Time { return start.Add(cc.maxAge - time.Minute) }
	if _, err := cc.decode(v); err != nil {
		t.Fatalf("a remembered cookie within MaxAge: %v", err)
	}
	cc.now = func() time.Time { return start.Add(cc.maxAge + 2*time.Second) }
	if _, err := cc.decode(v); err == nil {
		t.Fatal("a remembered cookie past MaxAge still opened")
	}
	if _, ok := cc.verified.get(v); ok {
		t.Error("a cookie past MaxAge is still remembered")
	}
}

func TestOnlyCookiesThatVerifiedAreRemembered(t *testing.T) {
	t.Parallel()
	cc := fuzzCodec(t)
	other, err := newCookieCodec([][]byte{[]byte("another secret, also 32 bytes long...")}, cc.options, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged := encoded(t, other, "alice", token{1})
	for _, v := range []string{forged, "junk", forged[:len(forged)-2]} {
		if _, err := cc.decode(v); err == nil {
			t.Fatalf("%q opened under the wrong secret", v)
		}
		if _, ok := cc.verified.get(v); ok {
			t.Errorf("%q was remembered though it did not verify", v)
		}
	}
}

func TestARememberedCookieKeepsWhatTheSecretsSaidOfIt(t *testing.T) {
	t.Parallel()
	old := fuzzCodec(t)
	v := encoded(t, old, "bob", token{2})
	rotated, err := newCookieCodec([][]byte{[]byte("the newer secret, at least 32 bytes"), []byte("fuzzing secret, at least 32 bytes long")}, old.options, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, pass := range []string{"first", "remembered"} {
		c, err := rotated.decode(v)
		if err != nil || !c.stale || c.userID != "bob" || c.hash != (token{2}).hash() {
			t.Errorf("%s decode of a cookie under the older secret: user %q, stale %v, err %v; want bob, stale", pass, c.userID, c.stale, err)
		}
	}
}

func TestTheCookieMemoryIsBoundedAndKeepsNoRequestMemory(t *testing.T) {
	t.Parallel()
	m := newVerifiedCookies()
	header := "session=" + fmt.Sprint(time.Now().UnixNano()) + "; theme=dark"
	value := header[len("session=") : len(header)-len("; theme=dark")]
	m.put(value, verifiedCookie{userID: "alice"})
	sh := m.shard(value)
	for k := range sh.m {
		if unsafe.StringData(k) == unsafe.StringData(value) {
			t.Error("the memory keeps the request's Cookie header alive")
		}
	}
	for i := range 10 * memoShards * memoShardSize {
		m.put(fmt.Sprint("cookie ", i), verifiedCookie{})
	}
	total := 0
	for i := range m.shards {
		total += len(m.shards[i].m)
	}
	if total > memoShards*memoShardSize {
		t.Errorf("the memory holds %d values, want at most %d", total, memoShards*memoShardSize)
	}
}

// encoded is cc's cookie value for userID and tok.
func encoded(t *testing.T, cc *cookieCodec, userID string, tok token) string {
	t.Helper()
	v, err := cc.encode(userID, tok)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
