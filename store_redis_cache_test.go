package session_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

// newCachedStore returns a RedisStore with the local cache on, once its
// invalidation feed is up.
func newCachedStore(t testing.TB, c redis.UniversalClient, opts session.RedisOptions) *session.RedisStore {
	t.Helper()
	if opts.LocalCache.Size == 0 {
		opts.LocalCache.Size = 1000
	}
	s := newRedisStore(t, c, opts)
	t.Cleanup(func() { s.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for session.CacheEpoch(s) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the local cache's invalidation feed did not come up within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s
}

func TestRedisStoreConformanceWithLocalCache(t *testing.T) {
	skipIfShort(t, "the whole conformance suite on real time with the cache on")
	srv := redistest.Start(t)
	c := srv.Client(t)
	runConformanceOnRealTime(t, c, 50*time.Millisecond, func(t *testing.T) session.Store {
		return newCachedStore(t, c, session.RedisOptions{})
	})
}

func TestRedisSentinelConformanceWithLocalCache(t *testing.T) {
	skipIfShort(t, "starts a primary, a replica and three sentinels")
	sentinel := redistest.StartSentinel(t)
	fc := sentinel.Client(t, nil)
	runConformanceOnRealTime(t, fc, 100*time.Millisecond, func(t *testing.T) session.Store {
		return newCachedStore(t, fc, session.RedisOptions{})
	})
}

func TestTheLocalCacheIsRefusedWhereItCannotTrack(t *testing.T) {
	t.Parallel()
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	single := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer single.Close()
	for _, tc := range []struct {
		name string
		c    redis.UniversalClient
		opts session.RedisOptions
		says string
	}{
		{"a ring", ring, session.RedisOptions{LocalCache: session.LocalCacheOptions{Size: 10}}, "Ring"},
		{"a negative size", single, session.RedisOptions{LocalCache: session.LocalCacheOptions{Size: -1}}, "negative"},
	} {
		s, err := session.NewRedisStore(tc.c, tc.opts)
		if !errors.Is(err, session.ErrInvalidOptions) {
			t.Errorf("%s: NewRedisStore = %v, %v; want ErrInvalidOptions", tc.name, s, err)
		} else if !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: the refusal %q does not say %q", tc.name, err, tc.says)
		}
	}
}

// serverCalls counts the commands redis-server ran for clients, heartbeats
// (PING) and this count's own INFO left out: it sees the store's own
// tracking connection, which a go-redis hook on the client does not.
func serverCalls(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_ping" || name == "cmdstat_info" {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		v, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		n += v
	}
	return n
}

// cacheSetup is one redis-server with a cached store A, an uncached store
// B (another instance), and a client to count and poke with.
type cacheSetup struct {
	admin *redis.Client
	hook  *roundTrips // on A's client
	a, b  *session.RedisStore
	p     session.Policy
}

func newCacheSetup(t *testing.T) *cacheSetup {
	t.Helper()
	srv := redistest.Start(t)
	ac := srv.Client(t)
	hook := &roundTrips{}
	ac.AddHook(hook)
	return &cacheSetup{
		admin: srv.Client(t),
		hook:  hook,
		a:     newCachedStore(t, ac, session.RedisOptions{}),
		b:     newRedisStore(t, srv.Client(t), session.RedisOptions{}),
		p:     session.Policy{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour, TouchInterval: time.Minute},
	}
}

func (s *cacheSetup) create(t *testing.T, k session.Key, values map[string]string) {
	t.Helper()
	if _, err := s.b.Create(t.Context(), k, session.Record{Info: session.Info{ID: "id-" + k.Hash[:8]}, Values: values}, s.p); err != nil {
		t.Fatal(err)
	}
}

// reports returns a channel that gets every report A's cache applied.
func reports(s *session.RedisStore) <-chan []string {
	ch := make(chan []string, 1024)
	session.OnCacheReport(s, func(names []string) {
		select {
		case ch <- names:
		default:
		}
	})
	return ch
}

// awaitReport waits until A's cache applied a report naming a key that ends
// with suffix ("" for a report of everything).
func awaitReport(t *testing.T, ch <-chan []string, suffix string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case names := <-ch:
			if names == nil && suffix == "" {
				return
			}
			for _, n := range names {
				if suffix != "" && strings.HasSuffix(n, suffix) {
					return
				}
			}
		case <-timeout:
			t.Fatalf("no report of %q within 5s", suffix)
		}
	}
}

// awaitUncached waits, report by report, until s no longer serves k from
// its cache.
func awaitUncached(t *testing.T, ch <-chan []string, s *session.RedisStore, k session.Key) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for session.CachedAt(s, k, time.Now()) {
		select {
		case <-ch:
		case <-timeout:
			t.Fatal("the entry was not dropped within 5s")
		}
	}
}

func TestACachedReadCostsNoRoundTrip(t *testing.T) {
	t.Parallel()
	s := newCacheSetup(t)
	k := sessiontest.NewKey("kim")
	s.create(t, k, map[string]string{"a": "1"})
	ctx := t.Context()

	before := serverCalls(t, s.admin)
	if _, err := s.a.Load(ctx, k, session.Client{}, s.p); err != nil {
		t.Fatal(err)
	}
	if got := serverCalls(t, s.admin) - before; got == 0 {
		t.Fatal("the first read ran no command in Redis")
	}
	if !session.CachedAt(s.a, k, time.Now()) {
		t.Fatal("the first read left no entry in the cache")
	}
	s.hook.reset()
	before = serverCalls(t, s.admin)
	for range 100 {
		rec, err := s.a.Load(ctx, k, session.Client{}, s.p)
		if err != nil || rec.Values["a"] != "1" || rec.ID != "id-"+k.Hash[:8] {
			t.Fatalf("cached read = %+v, %v", rec, err)
		}
	}
	if got := serverCalls(t, s.admin) - before; got != 0 {
		t.Errorf("100 cached reads ran %d commands in Redis, want 0", got)
	}
	if trips, cmds := s.hook.reset(); trips != 0 {
		t.Errorf("100 cached reads made %d round trips on the client (%s), want 0", trips, cmds)
	}

	// A write through A keeps the entry current: the next read is a hit
	// and sees it.
	if _, err := s.a.Incr(ctx, k, "n", 5, s.p); err != nil {
		t.Fatal(err)
	}
	if err := s.a.Update(ctx, k, session.Change{Set: map[string]string{"a": "2"}}, s.p); err != nil {
		t.Fatal(err)
	}
	before = serverCalls(t, s.admin)
	rec, err := s.a.Load(ctx, k, session.Client{}, s.p)
	if err != nil || rec.Values["a"] != "2" || rec.Values["n"] != "5" {
		t.Fatalf("read after own writes = %v, %v; want a=2 n=5", rec.Values, err)
	}
	if got := serverCalls(t, s.admin) - before; got != 0 {
		t.Errorf("the read after this instance's own writes ran %d commands, want 0 (a hit)", got)
	}
}

func TestWritesFromManyConcurrentSessionsKeepThemCached(t *testing.T) {
	t.Parallel()
	s := newCacheSetup(t)
	// Far more sessions at once than the cache has tracking connections:
	// a write that went through the client's pool instead (as one did
	// when its connection was busy) dropped its session from the cache.
	const sessions, rounds = 32, 20
	keys := make([]session.Key, sessions)
	for i := range keys {
		keys[i] = sessiontest.NewKey("writer-" + strconv.Itoa(i))
		s.create(t, keys[i], nil)
	}
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			for range rounds {
				if _, err := s.a.Load(t.Context(), k, session.Client{}, s.p); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.a.Incr(t.Context(), k, "n", 1, s.p); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	uncached := 0
	for _, k := range keys {
		if !session.CachedAt(s.a, k, time.Now()) {
			uncached++
		}
	}
	if uncached > 0 {
		t.Errorf("%d of %d sessions are not cached after their own concurrent writes", uncached, sessions)
	}
	before := serverCalls(t, s.admin)
	for _, k := range keys {
		rec, err := s.a.Load(t.Context(), k, session.Client{}, s.p)
		if err != nil || rec.Values["n"] != strconv.Itoa(rounds) {
			t.Errorf("read after the writes = %v, %v; want n=%d", rec.Values, err, rounds)
		}
	}
	if got := serverCalls(t, s.admin) - before; got != 0 {
		t.Errorf("the reads after the writes ran %d commands in Redis, want 0 (all hits)", got)
	}
}

func TestAChangeOnAnotherInstanceDropsTheEntry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		suffix func(k session.Key) string // the key whose report drops the entry
		change func(t *testing.T, s *cacheSetup, k session.Key)
		check  func(t *testing.T, rec session.Record, err error)
	}{
		{"an update of a value", func(k session.Key) string { return k.Hash }, func(t *testing.T, s *cacheSetup, k session.Key) {
			if err := s.b.Update(t.Context(), k, session.Change{Set: map[string]string{"a": "changed"}}, s.p); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, rec session.Record, err error) {
			if err != nil || rec.Values["a"] != "changed" {
				t.Errorf("read after B's update = %v, %v; want a=changed", rec.Values, err)
			}
		}},
		{"a revocation by ID", func(k session.Key) string { return k.Hash }, func(t *testing.T, s *cacheSetup, k session.Key) {
			if err := s.b.Revoke(t.Context(), k.UserID, "id-"+k.Hash[:8]); err != nil {
				t.Fatal(err)
			}
		}, mustBeNotFound},
		{"a logout (Delete)", func(k session.Key) string { return k.Hash }, func(t *testing.T, s *cacheSetup, k session.Key) {
			if err := s.b.Delete(t.Context(), k); err != nil {
				t.Fatal(err)
			}
		}, mustBeNotFound},
		{"a RevokeAll of the user", func(session.Key) string { return ":gen" }, func(t *testing.T, s *cacheSetup, k session.Key) {
			if _, err := s.b.RevokeAll(t.Context(), k.UserID, session.Key{}); err != nil {
				t.Fatal(err)
			}
		}, mustBeNotFound},
		{"a FLUSHALL", func(session.Key) string { return "" }, func(t *testing.T, s *cacheSetup, k session.Key) {
			if err := s.admin.FlushAll(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
		}, mustBeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCacheSetup(t)
			k := sessiontest.NewKey("lee")
			s.create(t, k, map[string]string{"a": "1"})
			if _, err := s.a.Load(t.Context(), k, session.Client{}, s.p); err != nil {
				t.Fatal(err)
			}
			if !session.CachedAt(s.a, k, time.Now()) {
				t.Fatal("no entry after a read")
			}
			ch := reports(s.a)
			tc.change(t, s, k)
			awaitReport(t, ch, tc.suffix(k))
			if session.CachedAt(s.a, k, time.Now()) {
				t.Fatal("the entry is still served after the report")
			}
			rec, err := s.a.Load(t.Context(), k, session.Client{}, s.p)
			tc.check(t, rec, err)
		})
	}
}

func mustBeNotFound(t *testing.T, rec session.Record, err error) {
	t.Helper()
	if !errors.Is(err, session.ErrNotFound) {
		t.Errorf("read of an ended session = %+v, %v; want ErrNotFound", rec, err)
	}
}

// TestNoCachedReadAfterTheRevocationArrived loads a session on A from many
// goroutines while B revokes it. Each load notes whether A's cache had
// applied the report of the revocation before the load began; no such load
// may find the session. No timing is involved: the order is the hook's.
func TestNoCachedReadAfterTheRevocationArrived(t *testing.T) {
	t.Parallel()
	s := newCacheSetup(t)
	k := sessiontest.NewKey("max")
	s.create(t, k, map[string]string{"a": "1"})
	if _, err := s.a.Load(t.Context(), k, session.Client{}, s.p); err != nil {
		t.Fatal(err)
	}
	var arrived atomic.Bool
	arrivedCh := make(chan struct{})
	session.OnCacheReport(s.a, func(names []string) {
		for _, n := range names {
			if strings.HasSuffix(n, k.Hash) && !arrived.Swap(true) {
				close(arrivedCh)
			}
		}
	})
	var (
		wg                  sync.WaitGroup
		hitsBefore, errsAll atomic.Int64
		afterLoads          atomic.Int64
		stale               atomic.Int64
	)
	stop := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := arrived.Load()
				_, err := s.a.Load(context.Background(), k, session.Client{}, s.p)
				switch {
				case after && err == nil:
					stale.Add(1)
				case after:
					afterLoads.Add(1)
				case err == nil:
					hitsBefore.Add(1)
				default:
					errsAll.Add(1)
				}
				if after && afterLoads.Load() >= 1000 {
					return
				}
			}
		}()
	}
	// Let the readers hit the cache before the revocation.
	for hitsBefore.Load() < 1000 {
		select {
		case <-time.After(10 * time.Second):
			t.Fatal("the readers made no progress")
		default:
		}
		runtime.Gosched()
	}
	if err := s.b.Revoke(t.Context(), "max", "id-"+k.Hash[:8]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrivedCh:
	case <-time.After(5 * time.Second):
		t.Fatal("the revocation was not reported within 5s")
	}
	wg.Wait()
	close(stop)
	if n := stale.Load(); n > 0 {
		t.Errorf("%d reads that began after the revocation's report was applied found the session", n)
	}
	if afterLoads.Load() < 1000 {
		t.Errorf("only %d reads after the report", afterLoads.Load())
	}
	t.Logf("reads before the report: %d found the session; after it: %d, none found it", hitsBefore.Load(), afterLoads.Load())
}

func TestALostFeedDropsEverything(t *testing.T) {
	t.Parallel()
	s := newCacheSetup(t)
	k1, k2 := sessiontest.NewKey("ann"), sessiontest.NewKey("")
	s.create(t, k1, map[string]string{"a": "1"})
	s.create(t, k2, map[string]string{"a": "1"})
	for _, k := range []session.Key{k1, k2} {
		if _, err := s.a.Load(t.Context(), k, session.Client{}, s.p); err != nil {
			t.Fatal(err)
		}
	}
	if n := session.CacheLen(s.a); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
	epoch := session.CacheEpoch(s.a)
	// A loses its subscriber; while it cannot hear, B changes k1.
	if err := s.admin.Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the epoch ends", 5*time.Second, func() bool { return session.CacheEpoch(s.a) != epoch })
	for _, k := range []session.Key{k1, k2} {
		if session.CachedAt(s.a, k, time.Now()) {
			t.Errorf("an entry of the lost epoch is still served")
		}
	}
	if err := s.b.Update(t.Context(), k1, session.Change{Set: map[string]string{"a": "changed"}}, s.p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next epoch", 5*time.Second, func() bool { return session.CacheEpoch(s.a) > epoch })
	if rec, err := s.a.Load(t.Context(), k1, session.Client{}, s.p); err != nil || rec.Values["a"] != "changed" {
		t.Errorf("read after the feed came back = %v, %v; want the change made while it was lost", rec.Values, err)
	}
}

func TestACachedReadEndsWithinTouchIntervalAndTheTTL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		idle, touch time.Duration
		window      time.Duration // the longest an entry may be served after the read returned
	}{
		{"the touch interval bounds it", time.Hour, 2 * time.Second, 2 * time.Second},
		{"the idle TTL bounds it when shorter", 3 * time.Second, time.Minute, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCacheSetup(t)
			s.p.IdleTimeout, s.p.TouchInterval = tc.idle, tc.touch
			k := sessiontest.NewKey("ivy")
			s.create(t, k, nil)
			if _, err := s.a.Load(t.Context(), k, session.Client{}, s.p); err != nil {
				t.Fatal(err)
			}
			// The read slid the TTL and Redis then counted the window's
			// start, both before the reply came: the key lives, and the
			// last-seen time is TouchInterval old, no later than window
			// after now.
			returned := time.Now()
			if !session.CachedAt(s.a, k, returned) {
				t.Fatal("no entry after a read")
			}
			if session.CachedAt(s.a, k, returned.Add(tc.window)) {
				t.Errorf("the entry would be served %v after the read returned", tc.window)
			}
		})
	}
}

func TestTwoCachedInstancesSeeEachOthersWrites(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newCachedStore(t, srv.Client(t), session.RedisOptions{})
	b := newCachedStore(t, srv.Client(t), session.RedisOptions{})
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour, TouchInterval: time.Minute}
	ctx := t.Context()
	k := sessiontest.NewKey("zoe")
	if _, err := a.Create(ctx, k, session.Record{Info: session.Info{ID: "z"}, Values: map[string]string{"n": "0"}}, p); err != nil {
		t.Fatal(err)
	}
	chA, chB := reports(a), reports(b)
	for i := 1; i <= 20; i++ {
		writer, reader, ch := a, b, chB
		if i%2 == 0 {
			writer, reader, ch = b, a, chA
		}
		if _, err := reader.Load(ctx, k, session.Client{}, p); err != nil {
			t.Fatal(err)
		}
		if _, err := writer.Incr(ctx, k, "n", 1, p); err != nil {
			t.Fatal(err)
		}
		awaitUncached(t, ch, reader, k)
		for _, s := range []*session.RedisStore{writer, reader} {
			if rec, err := s.Load(ctx, k, session.Client{}, p); err != nil || rec.Values["n"] != strconv.Itoa(i) {
				t.Fatalf("write %d: read = %v, %v", i, rec.Values, err)
			}
		}
	}
}

// BenchmarkRevocationReachesTheCache measures how long a revocation on
// another instance takes to drop this instance's entry: from just before
// B's Revoke is sent until A's cache has applied Redis's report of it.
// It reports the median, the 99th percentile and the largest, in µs.
//
//	go test -run '^$' -bench RevocationReachesTheCache -benchtime 2000x
func BenchmarkRevocationReachesTheCache(b *testing.B) {
	srv := redistest.Start(b)
	a := newCachedStore(b, srv.Client(b), session.RedisOptions{})
	other := newRedisStore(b, srv.Client(b), session.RedisOptions{})
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour, TouchInterval: time.Minute}
	ctx := context.Background()
	var want atomic.Pointer[string]
	reached := make(chan time.Time, 1)
	session.OnCacheReport(a, func(names []string) {
		at := time.Now()
		w := want.Load()
		for _, n := range names {
			if w != nil && strings.HasSuffix(n, *w) {
				select {
				case reached <- at:
				default:
				}
			}
		}
	})
	var took []time.Duration
	for b.Loop() {
		k := sessiontest.NewKey("rev")
		if _, err := other.Create(ctx, k, session.Record{Info: session.Info{ID: k.Hash}}, p); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Load(ctx, k, session.Client{}, p); err != nil {
			b.Fatal(err)
		}
		if !session.CachedAt(a, k, time.Now()) {
			continue // the tracking was down: not cached
		}
		want.Store(&k.Hash)
		began := time.Now()
		if err := other.Revoke(ctx, "rev", k.Hash); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-reached:
			took = append(took, at.Sub(began))
		case <-time.After(5 * time.Second):
			b.Fatal("no report within 5s")
		}
		if _, err := a.Load(ctx, k, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
			b.Fatalf("read after the report: %v, want ErrNotFound", err)
		}
	}
	if len(took) == 0 {
		b.Fatal("no revocation measured")
	}
	slices.Sort(took)
	at := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))].Microseconds()) }
	b.ReportMetric(at(0.5), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(float64(took[len(took)-1].Microseconds()), "max-µs")
	b.ReportMetric(float64(len(took)), "revocations")
}

func TestAFailoverDropsTheCache(t *testing.T) {
	skipIfShort(t, "kills the Sentinel primary and waits for the failover")
	sentinel := redistest.StartSentinel(t)
	a := newCachedStore(t, sentinel.Client(t, nil), session.RedisOptions{})
	b := newRedisStore(t, sentinel.Client(t, nil), session.RedisOptions{WaitReplicas: 1, WaitTimeout: time.Second})
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour, TouchInterval: time.Minute}
	ctx := t.Context()
	k := sessiontest.NewKey("fay")
	if _, err := b.Create(ctx, k, session.Record{Info: session.Info{ID: "f"}, Values: map[string]string{"a": "1"}}, p); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Load(ctx, k, session.Client{}, p); err != nil {
		t.Fatal(err)
	}
	if !session.CachedAt(a, k, time.Now()) {
		t.Fatal("no entry after a read")
	}
	epoch := session.CacheEpoch(a)
	victim, err := sentinel.Primary()
	if err != nil {
		t.Fatal(err)
	}
	victim.Kill()
	waitFor(t, "the epoch on the old primary ends", 10*time.Second, func() bool { return session.CacheEpoch(a) != epoch })
	if session.CachedAt(a, k, time.Now()) {
		t.Fatal("an entry read from the dead primary is still served")
	}
	if _, err := sentinel.WaitFailover(victim, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// B changes the session on the new primary, maybe before A's feed is
	// back; A must read the change either way.
	waitFor(t, "B reaches the new primary", 30*time.Second, func() bool {
		return b.Update(ctx, k, session.Change{Set: map[string]string{"a": "after-failover"}}, p) == nil
	})
	waitFor(t, "A's feed on the new primary", 30*time.Second, func() bool { return session.CacheEpoch(a) > epoch })
	for range 3 {
		if rec, err := a.Load(ctx, k, session.Client{}, p); err != nil || rec.Values["a"] != "after-failover" {
			t.Fatalf("read after the failover = %v, %v; want the change made on the new primary", rec.Values, err)
		}
	}
}

func TestALostTrackingConnectionEndsTheEpochAtOnce(t *testing.T) {
	t.Parallel()
	s := newCacheSetup(t)
	cached, other := sessiontest.NewKey("gus"), sessiontest.NewKey("gus")
	s.create(t, cached, nil)
	s.create(t, other, nil)
	if _, err := s.a.Load(t.Context(), cached, session.Client{}, s.p); err != nil {
		t.Fatal(err)
	}
	epoch := session.CacheEpoch(s.a)
	killTrackingConnections(t, s.admin)
	// The next call through a tracking connection finds it gone: the read
	// is served through the pool, and the epoch ends before it returns.
	if _, err := s.a.Load(t.Context(), other, session.Client{}, s.p); err != nil {
		t.Fatalf("a read on a lost tracking connection failed: %v", err)
	}
	if e := session.CacheEpoch(s.a); e == epoch {
		t.Errorf("the epoch is still %d after a call found its tracking connection gone", e)
	}
	if session.CachedAt(s.a, cached, time.Now()) {
		t.Error("an entry tracked by a lost connection is still served")
	}
	waitFor(t, "a new epoch", 5*time.Second, func() bool { return session.CacheEpoch(s.a) > epoch })
}

// killTrackingConnections kills every tracking connection (CLIENT LIST
// flag t); what they tracked is no longer reported.
func killTrackingConnections(t *testing.T, admin *redis.Client) {
	t.Helper()
	list, err := admin.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		id, flags := "", ""
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(f, "flags="); ok {
				flags = v
			}
		}
		if strings.Contains(flags, "t") {
			if err := admin.Do(t.Context(), "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed == 0 {
		t.Fatal("no tracking connection found")
	}
}

func TestWritesQueuedOnALostTrackingConnectionGoThroughThePool(t *testing.T) {
	t.Parallel()
	s := newCacheSetup(t)
	keys := make([]session.Key, 32)
	for i := range keys {
		keys[i] = sessiontest.NewKey("queued-" + strconv.Itoa(i))
		s.create(t, keys[i], nil)
		if _, err := s.a.Load(t.Context(), keys[i], session.Client{}, s.p); err != nil {
			t.Fatal(err)
		}
	}
	killTrackingConnections(t, s.admin)
	// Every write waits for its session's tracking connection. The first
	// on each finds it gone and fails (it may or may not have run); those
	// behind it sent nothing, and must go through the pool instead.
	var wg sync.WaitGroup
	wrote := make([]bool, len(keys))
	for i, k := range keys {
		wg.Go(func() {
			_, err := s.a.Incr(t.Context(), k, "n", 1, s.p)
			wrote[i] = err == nil
		})
	}
	wg.Wait()
	failed := 0
	for i, k := range keys {
		if !wrote[i] {
			failed++
			continue
		}
		rec, err := s.b.Load(t.Context(), k, session.Client{}, s.p)
		if err != nil || rec.Values["n"] != "1" {
			t.Errorf("after a write that succeeded, n = %q, %v; want 1", rec.Values["n"], err)
		}
	}
	if failed > session.CacheTrackConns {
		t.Errorf("%d of %d writes failed, want at most one per tracking connection (%d)", failed, len(keys), session.CacheTrackConns)
	}
}
