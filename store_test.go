package session_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

func TestMemoryStoreConformance(t *testing.T) {
	t.Parallel()
	sessiontest.RunStoreTests(t, sessiontest.Harness{
		Run: synctest.Test,
		New: func(t *testing.T) session.Store {
			s := session.NewMemoryStore()
			t.Cleanup(func() { s.Close() })
			return s
		},
		Advance: func(t *testing.T, d time.Duration) { time.Sleep(d) },
	})
}

func TestRedisStoreConformanceOnMiniredis(t *testing.T) {
	t.Parallel()
	var clock *fakeRedisClock
	sessiontest.RunStoreTests(t, sessiontest.Harness{
		New: func(t *testing.T) session.Store {
			clock = newFakeRedis(t)
			return newRedisStore(t, clock.client, session.RedisOptions{})
		},
		Advance: func(t *testing.T, d time.Duration) { clock.advance(d) },
	})
}

func TestRedisStoreConformanceOnRealRedis(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t).Client(t)
	runConformanceOnRealTime(t, c, 50*time.Millisecond, func(t *testing.T) session.Store {
		return newRedisStore(t, c, session.RedisOptions{})
	})
}

// runConformanceOnRealTime runs the conformance suite on a real Redis
// behind c, emptied before each test and checked after it for keys
// without a TTL, with the store newStore makes.
func runConformanceOnRealTime(t *testing.T, c redis.UniversalClient, unit time.Duration, newStore func(t *testing.T) session.Store) {
	t.Helper()
	sessiontest.RunStoreTests(t, sessiontest.Harness{
		New: func(t *testing.T) session.Store {
			if err := c.FlushAll(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { assertEveryKeyHasTTL(t, c) })
			return newStore(t)
		},
		Advance: func(t *testing.T, d time.Duration) { time.Sleep(d) },
		Unit:    unit,
	})
}

// fakeRedisClock is a miniredis whose clock (TIME, seen by the scripts) and
// TTLs move together, only when the test says so.
type fakeRedisClock struct {
	m      *miniredis.Miniredis
	client *redis.Client
	now    time.Time
}

func newFakeRedis(t *testing.T) *fakeRedisClock {
	t.Helper()
	m := miniredis.RunT(t)
	f := &fakeRedisClock{m: m, now: time.Now().Truncate(time.Millisecond)}
	m.SetTime(f.now)
	f.client = redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() {
		assertEveryKeyHasTTL(t, f.client)
		f.client.Close()
	})
	return f
}

func (f *fakeRedisClock) advance(d time.Duration) {
	f.now = f.now.Add(d)
	f.m.SetTime(f.now)
	f.m.FastForward(d)
}

// assertEveryKeyHasTTL checks the global invariant: no key the store wrote
// lives forever.
func assertEveryKeyHasTTL(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	ctx := context.Background() // t.Context is cancelled before cleanups run
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Errorf("KEYS: %v", err)
		return
	}
	for _, k := range keys {
		ttl, err := c.Do(ctx, "PTTL", k).Int64()
		if err != nil {
			t.Errorf("PTTL %q: %v", k, err)
			continue
		}
		if ttl == -1 {
			t.Errorf("key %q has no TTL (PTTL %v)", k, ttl)
		}
	}
}
