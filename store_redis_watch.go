package session

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// WatchSessions implements ChangeFeed with Redis's server-assisted
// invalidation (CLIENT TRACKING, redirected to a Pub/Sub connection; Redis
// 6 or later). It needs a single-node or Sentinel client (*redis.Client):
// on Redis Cluster each node tracks only its own keys, which this feed
// does not follow yet, so it returns an error there and FallbackStore keeps
// no local copies. It does no I/O itself; the feed connects in the
// background, on two connections of its own made from the client's options,
// and reconnects until Close.
func (s *RedisStore) WatchSessions(changed func(keys []Key)) (SessionWatch, error) {
	c, ok := s.c.(*redis.Client)
	if !ok {
		return nil, fmt.Errorf("session: RedisStore can watch sessions only through a single-node or Sentinel client, not a %T", s.c)
	}
	w := &redisWatch{s: s}
	w.inv = newInvalidator(*c.Options(), 1, func(names []string) {
		if names == nil {
			changed(nil)
			return
		}
		var keys []Key
		for _, name := range names {
			if k, ok := s.keyOf(name); ok {
				keys = append(keys, k)
			}
		}
		if len(keys) > 0 {
			changed(keys)
		}
	})
	return w, nil
}

// keyOf reads a key name the store wrote back into what it names: a
// session, or (Hash "") every session of a user, for the user's generation.
// Other keys (indexes, other prefixes) name nothing a watcher holds.
func (s *RedisStore) keyOf(name string) (Key, bool) {
	rest, ok := strings.CutPrefix(name, s.prefix+"{")
	if !ok {
		return Key{}, false
	}
	tag, rest, ok := strings.Cut(rest, "}:")
	if !ok || tag == "" {
		return Key{}, false
	}
	switch tag[0] {
	case 'a':
		return Key{Hash: rest}, validHash(rest)
	case 'u':
		user, err := base64.RawURLEncoding.DecodeString(tag[1:])
		if err != nil {
			return Key{}, false
		}
		if rest == "gen" {
			return Key{UserID: string(user)}, true
		}
		return Key{UserID: string(user), Hash: rest}, validHash(rest)
	}
	return Key{}, false
}

type redisWatch struct {
	s   *RedisStore
	inv *invalidator
}

func (w *redisWatch) Epoch() (uint64, time.Time) { return w.inv.state() }
func (w *redisWatch) Close() error               { return w.inv.Close() }

// Watch implements SessionWatch: one barrier and one pipeline of plain
// reads (HGETALL of each session, GET of its user's generation) on the
// tracking connection, whatever the number of keys.
func (w *redisWatch) Watch(ctx context.Context, keys []Key, keep func(k Key, rec Record, epoch uint64)) error {
	type read struct {
		k     Key
		names []string // session, generation, index
		hash  *redis.MapStringStringCmd
		gen   *redis.StringCmd
	}
	reads := make([]read, 0, len(keys))
	for _, k := range keys {
		if names, err := w.s.keys(k); err == nil {
			reads = append(reads, read{k: k, names: names})
		}
	}
	return w.inv.track(ctx, 0, func(p redis.Pipeliner) {
		for i := range reads {
			r := &reads[i]
			r.hash = p.HGetAll(ctx, r.names[0])
			if len(r.names) > 1 {
				r.gen = p.Get(ctx, r.names[1])
			}
		}
	}, func(_ []redis.Cmder, epoch uint64, reported func(string) bool) {
		for _, r := range reads {
			if reported(r.names[0]) || (r.gen != nil && reported(r.names[1])) {
				continue
			}
			if rec, ok := liveRecord(r.k, r.hash, r.gen); ok {
				keep(r.k, rec, epoch)
			}
		}
	})
}

// liveRecord reads a session as the load script would judge it: present,
// the user's, and of the user's current generation.
func liveRecord(k Key, hash *redis.MapStringStringCmd, gen *redis.StringCmd) (Record, bool) {
	h, err := hash.Result()
	if err != nil || len(h) == 0 {
		return Record{}, false
	}
	rec, err := parseHashMap(k, h)
	if err != nil || !time.Now().Before(rec.Expires) {
		return Record{}, false
	}
	if gen != nil {
		g, err := gen.Result()
		if err != nil || g != h["@g"] {
			return Record{}, false
		}
	}
	return rec, true
}
