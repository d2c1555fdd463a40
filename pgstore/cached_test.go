package pgstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

func newTestCachedStore(t *testing.T, pg *Store, rdb redis.UniversalClient, opts CachedOptions) *CachedStore {
	t.Helper()
	c, err := NewCachedStore(pg, rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func flushRedis(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestCachedStoreConformance runs the suite on a real redis-server in front
// of a real PostgreSQL, on their real clocks.
func TestCachedStoreConformance(t *testing.T) {
	pool := testPool(t)
	rdb := redistest.Start(t).Client(t)
	sessiontest.RunStoreTests(t, sessiontest.Harness{
		New: func(t *testing.T) session.Store {
			emptyTables(t, pool)
			flushRedis(t, rdb)
			t.Cleanup(func() { assertEveryKeyHasTTL(t, rdb) })
			return newTestCachedStore(t, newTestStore(t, pool, Options{}), rdb, CachedOptions{})
		},
		Advance: func(t *testing.T, d time.Duration) { time.Sleep(d) },
		Unit:    50 * time.Millisecond,
	})
}

// TestCachedStoreFillRace puts a revocation (and, in turn, a write and a
// touch) between a Load's PostgreSQL read and its Redis fill, on another
// instance sharing the same Redis and PostgreSQL, and checks that the fill
// brings back nothing it must not.
func TestCachedStoreFillRace(t *testing.T) {
	pool := testPool(t)
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	p := session.Policy{IdleTimeout: time.Minute, Lifetime: time.Hour, TouchInterval: 10 * time.Second}
	cases := []struct {
		name    string
		between func(t *testing.T, other *CachedStore, k session.Key, id string)
		check   func(t *testing.T, c *CachedStore, k session.Key)
	}{
		{"a revoke all between the read and the fill leaves the session ended", func(t *testing.T, other *CachedStore, k session.Key, _ string) {
			if n, err := other.RevokeAll(ctx, k.UserID, session.Key{}); err != nil || n != 1 {
				t.Fatalf("RevokeAll = %d, %v", n, err)
			}
		}, mustBeGoneFromCache},
		{"a revoke by ID between the read and the fill leaves the session ended", func(t *testing.T, other *CachedStore, k session.Key, id string) {
			if err := other.Revoke(ctx, k.UserID, id); err != nil {
				t.Fatal(err)
			}
		}, mustBeGoneFromCache},
		{"a logout between the read and the fill leaves the session ended", func(t *testing.T, other *CachedStore, k session.Key, _ string) {
			if err := other.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}, mustBeGoneFromCache},
		{"a write between the read and the fill is not hidden by the older copy", func(t *testing.T, other *CachedStore, k session.Key, _ string) {
			if err := other.Update(ctx, k, session.Change{Set: map[string]string{"a": "2"}}, p); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, c *CachedStore, k session.Key) {
			t.Helper()
			for range 2 { // the first Load refills, the second is a cache hit
				rec, err := c.Load(ctx, k, session.Client{}, p)
				if err != nil || rec.Values["a"] != "2" {
					t.Fatalf("Load = %v, %v; want the write a=2", rec.Values, err)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			emptyTables(t, pool)
			flushRedis(t, rdb)
			pg := newTestStore(t, pool, Options{})
			c := newTestCachedStore(t, pg, rdb, CachedOptions{})
			other := newTestCachedStore(t, pg, rdb, CachedOptions{})
			k := sessiontest.NewKey("racer")
			rec, err := c.Create(ctx, k, session.Record{Info: session.Info{ID: "r1"}, Values: map[string]string{"a": "1"}}, p)
			if err != nil {
				t.Fatal(err)
			}
			flushRedis(t, rdb) // so the next Load misses and reads PostgreSQL
			ran := false
			c.beforeFill = func(got session.Key) {
				if got == k && !ran {
					ran = true
					tc.between(t, other, k, rec.ID)
				}
			}
			got, err := c.Load(ctx, k, session.Client{}, p)
			if err != nil || got.Values["a"] != "1" {
				t.Fatalf("the racing Load = %+v, %v; want the session as read before the race", got, err)
			}
			if !ran {
				t.Fatal("the hook did not run: the Load did not read PostgreSQL")
			}
			c.beforeFill = nil
			tc.check(t, c, k)
		})
	}
}

// mustBeGoneFromCache checks k is not found, and not cached either.
func mustBeGoneFromCache(t *testing.T, c *CachedStore, k session.Key) {
	t.Helper()
	for range 2 {
		if _, err := c.Load(context.Background(), k, session.Client{}, session.Policy{IdleTimeout: time.Minute, Lifetime: time.Hour, TouchInterval: time.Hour}); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Load of an ended session: err = %v, want ErrNotFound", err)
		}
	}
	if n, err := c.rdb.Exists(context.Background(), c.keys(k.Hash)[0]).Result(); err != nil || n != 0 {
		t.Fatalf("the ended session is cached (EXISTS = %d, %v)", n, err)
	}
}

// assertEveryKeyHasTTL checks that the cache writes no key that lives
// forever.
func assertEveryKeyHasTTL(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Errorf("KEYS: %v", err)
		return
	}
	for _, k := range keys {
		if ttl, err := rdb.PTTL(ctx, k).Result(); err != nil || ttl == -1 {
			t.Errorf("key %q has no TTL (%v, %v)", k, ttl, err)
		}
	}
}

func TestNewCachedStoreRefusesBadOptions(t *testing.T) {
	pg := &Store{}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, tc := range []struct {
		name string
		pg   *Store
		rdb  redis.UniversalClient
		opts CachedOptions
	}{
		{"no Store", nil, rdb, CachedOptions{}},
		{"no Redis client", pg, nil, CachedOptions{}},
		{"a brace in the prefix", pg, rdb, CachedOptions{Prefix: "s{"}},
		{"a negative timeout", pg, rdb, CachedOptions{Timeout: -1}},
	} {
		if _, err := NewCachedStore(tc.pg, tc.rdb, tc.opts); !errors.Is(err, session.ErrInvalidOptions) {
			t.Errorf("%s: err = %v, want ErrInvalidOptions", tc.name, err)
		}
	}
}
