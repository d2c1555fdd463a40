package session

import (
	"hash/maphash"
	"strings"
	"sync"
)

// verifiedCookies remembers cookie values the codec has verified, so that
// a session's every request does not pay again for the HMAC, the AES and
// the token hash: about 3 µs of CPU, a tenth of what a whole Redis read
// costs this process (README, Performance).
//
// Only values that verified go in, so a forger cannot fill it, and a value
// is looked up whole, by a hash seeded at random per process, so a near
// miss tells an attacker nothing. Each entry keeps the cookie's signed
// time: it stops being accepted when securecookie would stop accepting
// it (MaxAge). A codec's secrets never change, so neither do its answers.
// It holds at most memoShards*memoShardSize entries; a full shard forgets
// an arbitrary one. Safe for concurrent use.
type verifiedCookies struct {
	seed   maphash.Seed
	shards [memoShards]memoShard
}

const (
	memoShards    = 16
	memoShardSize = 256 // about 100 KiB a shard with 200-byte cookies
)

type memoShard struct {
	mu sync.Mutex
	m  map[string]verifiedCookie
}

// verifiedCookie is what decoding a cookie value found.
type verifiedCookie struct {
	userID string
	tok    token
	hash   string // tok.hash()
	stale  bool   // opened by an older secret
	signed int64  // Unix seconds, as signed in the cookie
}

func newVerifiedCookies() *verifiedCookies {
	return &verifiedCookies{seed: maphash.MakeSeed()}
}

func (v *verifiedCookies) shard(value string) *memoShard {
	return &v.shards[maphash.String(v.seed, value)%memoShards]
}

func (v *verifiedCookies) get(value string) (verifiedCookie, bool) {
	sh := v.shard(value)
	sh.mu.Lock()
	c, ok := sh.m[value]
	sh.mu.Unlock()
	return c, ok
}

func (v *verifiedCookies) forget(value string) {
	sh := v.shard(value)
	sh.mu.Lock()
	delete(sh.m, value)
	sh.mu.Unlock()
}

// put remembers c for value. The value is copied: it is a slice of the
// request's Cookie header, which must not be kept alive with it.
func (v *verifiedCookies) put(value string, c verifiedCookie) {
	sh := v.shard(value)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[string]verifiedCookie, memoShardSize)
	}
	if _, ok := sh.m[value]; !ok && len(sh.m) >= memoShardSize {
		for old := range sh.m {
			delete(sh.m, old)
			break
		}
	}
	sh.m[strings.Clone(value)] = c
}
