package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/pgstore/pgtest"
	"github.com/sessionkit/session/sessiontest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

// queryCounter counts the statements a pool sends.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}
func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (q *queryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	q.n.Add(1)
	return ctx
}
func (q *queryCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (q *queryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// commandCounter counts the commands a Redis client sends.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// newPool returns a pool on dsn; tracer may be nil.
func newPool(t *testing.T, dsn string, tracer pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 20
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestCachedStoreRoundTrips(t *testing.T) {
	srv := pgtest.Start(t)
	var pgq queryCounter
	pool := newPool(t, srv.DSN, &pgq)
	if err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	rdb := redistest.Start(t).Client(t)
	var rc commandCounter
	rdb.AddHook(&rc)
	ctx := context.Background()
	c := newTestCachedStore(t, newTestStore(t, pool, Options{}), rdb, CachedOptions{})
	p := session.Policy{IdleTimeout: time.Minute, Lifetime: time.Hour, TouchInterval: 300 * time.Millisecond}
	k := sessiontest.NewKey("rt")
	if _, err := c.Create(ctx, k, session.Record{Values: map[string]string{"a": "1"}}, p); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(ctx, k, session.Client{}, p); err != nil { // loads the script into Redis
		t.Fatal(err)
	}
	pg0, r0 := pgq.n.Load(), rc.n.Load()
	for range 10 {
		if rec, err := c.Load(ctx, k, session.Client{}, p); err != nil || rec.Values["a"] != "1" {
			t.Fatalf("Load = %v, %v", rec, err)
		}
	}
	if pg, r := pgq.n.Load()-pg0, rc.n.Load()-r0; pg != 0 || r != 10 {
		t.Errorf("10 cached loads cost %d PostgreSQL statements and %d Redis commands; want 0 and 10", pg, r)
	}
	time.Sleep(p.TouchInterval)
	pg0 = pgq.n.Load()
	for range 10 {
		if _, err := c.Load(ctx, k, session.Client{}, p); err != nil {
			t.Fatal(err)
		}
	}
	if pg := pgq.n.Load() - pg0; pg != 1 {
		t.Errorf("10 loads after the touch interval cost %d PostgreSQL statements; want 1 (the touch)", pg)
	}
}

// TestCachedStoreRedisOutage: with Redis killed, two instances keep
// serving from PostgreSQL, a revocation on one is effective on the other at
// once, and a Redis restarted empty signs nobody out.
func TestCachedStoreRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts redis-server")
	}
	pg := pgtest.Start(t)
	pool1, pool2 := newPool(t, pg.DSN, nil), newPool(t, pg.DSN, nil)
	if err := Migrate(context.Background(), pool1); err != nil {
		t.Fatal(err)
	}
	redisSrv := redistest.Start(t)
	opts := CachedOptions{Timeout: 200 * time.Millisecond, RetryAfter: 200 * time.Millisecond}
	a := newTestCachedStore(t, newTestStore(t, pool1, Options{}), redisSrv.Client(t), opts)
	b := newTestCachedStore(t, newTestStore(t, pool2, Options{}), redisSrv.Client(t), opts)
	instances := []*CachedStore{a, b}
	ctx := context.Background()
	p := session.Policy{IdleTimeout: time.Minute, Lifetime: time.Hour, TouchInterval: 50 * time.Millisecond}

	const clients = 50
	keys := make([]session.Key, clients)
	for i := range keys {
		keys[i] = sessiontest.NewKey(fmt.Sprint("user", i))
		if _, err := instances[i%2].Create(ctx, keys[i], session.Record{Info: session.Info{ID: fmt.Sprint("id", i)}}, p); err != nil {
			t.Fatal(err)
		}
	}
	victim := sessiontest.NewKey("victim")
	if _, err := a.Create(ctx, victim, session.Record{Info: session.Info{ID: "v"}}, p); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Load(ctx, victim, session.Client{}, p); err != nil { // cached
		t.Fatal(err)
	}

	var (
		stop     atomic.Bool
		failures atomic.Int64
		requests atomic.Int64
		written  = make([]int, clients) // the last value each client wrote
		wg       sync.WaitGroup
	)
	for i := range clients {
		wg.Go(func() {
			for n := 1; !stop.Load(); n++ {
				s := instances[n%2]
				if _, err := s.Load(ctx, keys[i], session.Client{}, p); err != nil {
					failures.Add(1)
					t.Errorf("client %d: Load: %v", i, err)
					return
				}
				if err := s.Update(ctx, keys[i], session.Change{Set: map[string]string{"n": fmt.Sprint(n)}}, p); err != nil {
					failures.Add(1)
					t.Errorf("client %d: Update: %v", i, err)
					return
				}
				written[i] = n
				requests.Add(2)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	redisSrv.Kill()
	time.Sleep(300 * time.Millisecond)
	// During the outage: a revocation on a is effective on b at once.
	if err := a.Revoke(ctx, "victim", "v"); err != nil {
		t.Fatalf("Revoke during the outage: %v", err)
	}
	if _, err := b.Load(ctx, victim, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("the other instance still loads the revoked session during the outage: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	redisSrv.Restart(t) // empty: no persistence
	time.Sleep(700 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d of %d requests failed", f, requests.Load())
	}
	t.Logf("%d requests, none failed", requests.Load())
	for i, k := range keys {
		for _, s := range instances {
			rec, err := s.Load(ctx, k, session.Client{}, p)
			if err != nil || rec.Values["n"] != fmt.Sprint(written[i]) {
				t.Errorf("client %d after the restart: Load = %v, %v; want n=%d", i, rec.Values, err, written[i])
			}
		}
	}
	for _, s := range instances {
		if _, err := s.Load(ctx, victim, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("the revoked session is back after the restart: %v", err)
		}
	}
	if n, err := redisSrv.Client(t).DBSize(ctx).Result(); err != nil || n == 0 {
		t.Errorf("Redis holds %d keys after the restart (%v): the cache was not used again", n, err)
	}
	for _, s := range instances {
		if n := s.PendingInvalidations(); n != 0 {
			t.Errorf("%d invalidations still wait for Redis", n)
		}
	}
}

// TestCachedStoreRedisRestartSignsNobodyOut: every signed-in user is still
// signed in, with their values, after Redis restarts without persistence.
func TestCachedStoreRedisRestartSignsNobodyOut(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts redis-server")
	}
	pool := testPool(t)
	redisSrv := redistest.Start(t)
	c := newTestCachedStore(t, newTestStore(t, pool, Options{}), redisSrv.Client(t), CachedOptions{RetryAfter: 50 * time.Millisecond})
	ctx := context.Background()
	p := session.Policy{IdleTimeout: time.Minute, Lifetime: time.Hour, TouchInterval: time.Minute}
	var keys []session.Key
	for i := range 200 {
		k := sessiontest.NewKey(fmt.Sprint("u", i))
		if _, err := c.Create(ctx, k, session.Record{Values: map[string]string{"i": fmt.Sprint(i)}}, p); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	redisSrv.Kill()
	redisSrv.Restart(t)
	if n, err := redisSrv.Client(t).DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("Redis after the restart holds %d keys (%v); want it empty", n, err)
	}
	time.Sleep(100 * time.Millisecond) // the store may be resting after a failed call
	for i, k := range keys {
		rec, err := c.Load(ctx, k, session.Client{}, p)
		if err != nil || rec.Values["i"] != fmt.Sprint(i) {
			t.Fatalf("session %d after the restart: %v, %v", i, rec.Values, err)
		}
	}
}

// TestStorePostgresDown: with PostgreSQL stopped, every operation that needs
// it fails with an error (not ErrNotFound, not success) within the store's
// timeout, cached sessions still load, and once it is back nothing revoked
// before the outage returns.
func TestStorePostgresDown(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and restarts PostgreSQL")
	}
	srv := pgtest.Start(t)
	pool := newPool(t, srv.DSN, nil)
	if err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	rdb := redistest.Start(t).Client(t)
	pg := newTestStore(t, pool, Options{Timeout: time.Second})
	c := newTestCachedStore(t, pg, rdb, CachedOptions{})
	ctx := context.Background()
	p := session.Policy{IdleTimeout: time.Minute, Lifetime: time.Hour, TouchInterval: time.Hour}
	live, revoked := sessiontest.NewKey("alice"), sessiontest.NewKey("alice")
	for _, k := range []session.Key{live, revoked} {
		if _, err := c.Create(ctx, k, session.Record{Info: session.Info{ID: k.Hash[:6]}}, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Revoke(ctx, "alice", revoked.Hash[:6]); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	for _, st := range []struct {
		name  string
		store session.Store
	}{{"Store", pg}, {"CachedStore", c}} {
		ops := map[string]func() error{
			"Load of an uncached session": func() error {
				_, err := st.store.Load(ctx, sessiontest.NewKey("bob"), session.Client{}, p)
				return err
			},
			"Update": func() error {
				return st.store.Update(ctx, live, session.Change{Set: map[string]string{"a": "1"}}, p)
			},
			"Create": func() error {
				_, err := st.store.Create(ctx, sessiontest.NewKey("bob"), session.Record{}, p)
				return err
			},
			"Revoke all": func() error { _, err := st.store.RevokeAll(ctx, "alice", session.Key{}); return err },
			"List":       func() error { _, err := st.store.List(ctx, "alice"); return err },
		}
		for name, op := range ops {
			start := time.Now()
			err := op()
			took := time.Since(start)
			if err == nil || errors.Is(err, session.ErrNotFound) || errors.Is(err, session.ErrRefused) {
				t.Errorf("%s: %s with PostgreSQL down: err = %v; want an outage (not ErrNotFound, not ErrRefused)", st.name, name, err)
			}
			if took > 3*time.Second {
				t.Errorf("%s: %s with PostgreSQL down took %v", st.name, name, took)
			}
		}
		if _, err := st.store.Load(ctx, revoked, session.Client{}, p); err == nil {
			t.Errorf("%s: the revoked session loads while PostgreSQL is down", st.name)
		}
	}
	// Degraded service: a session cached less than TouchInterval ago still
	// loads from Redis; the same session from PostgreSQL alone is an error.
	if _, err := c.Load(ctx, live, session.Client{}, p); err != nil {
		t.Errorf("CachedStore: a cached session with PostgreSQL down: %v", err)
	}
	if _, err := pg.Load(ctx, live, session.Client{}, p); err == nil || errors.Is(err, session.ErrNotFound) {
		t.Errorf("Store: Load with PostgreSQL down: err = %v, want a database error", err)
	}
	srv.Restart(t)
	for _, s := range []session.Store{pg, c} {
		if _, err := s.Load(ctx, revoked, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("after the restart the revoked session: %v", err)
		}
		if _, err := s.Load(ctx, live, session.Client{}, p); err != nil {
			t.Errorf("after the restart the live session: %v", err)
		}
	}
}

// TestCachedStoreRetriesAnInvalidationRedisMissed: Redis paused (so it keeps
// its data, as in a partition) while one instance revokes a session another
// has cached; the revocation is served by PostgreSQL meanwhile, and once
// Redis answers again the queued invalidation drops the stale copy.
func TestCachedStoreRetriesAnInvalidationRedisMissed(t *testing.T) {
	if testing.Short() {
		t.Skip("pauses redis-server")
	}
	pool := testPool(t)
	srv := redistest.Start(t)
	admin := srv.Client(t)
	pg := newTestStore(t, pool, Options{})
	opts := CachedOptions{Timeout: 50 * time.Millisecond, RetryAfter: 100 * time.Millisecond}
	a := newTestCachedStore(t, pg, srv.Client(t), opts)
	b := newTestCachedStore(t, pg, srv.Client(t), opts)
	ctx := context.Background()
	p := session.Policy{IdleTimeout: time.Minute, Lifetime: time.Hour, TouchInterval: time.Hour}
	victim := sessiontest.NewKey("vic")
	if _, err := a.Create(ctx, victim, session.Record{Info: session.Info{ID: "v"}}, p); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Load(ctx, victim, session.Client{}, p); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CLIENT", "PAUSE", "500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, "vic", "v"); err != nil {
		t.Fatalf("Revoke while Redis is paused: %v", err)
	}
	if n := a.PendingInvalidations(); n != 1 {
		t.Fatalf("%d invalidations queued, want 1", n)
	}
	start := time.Now()
	if _, err := b.Load(ctx, victim, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Load on the other instance while Redis is paused: %v, want ErrNotFound", err)
	}
	// The stalled Redis costs the Timeout, not the client's ReadTimeout.
	if took := time.Since(start); took > opts.Timeout+200*time.Millisecond {
		t.Errorf("Load with Redis paused took %v; want about the %v timeout", took, opts.Timeout)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.PendingInvalidations() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the queued invalidation never reached Redis")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(opts.RetryAfter) // b may be resting from its timeout
	for _, s := range []*CachedStore{a, b} {
		if _, err := s.Load(ctx, victim, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("after Redis came back the revoked session loads: %v", err)
		}
	}
	if n, err := admin.Exists(ctx, a.keys(victim.Hash)[0]).Result(); err != nil || n != 0 {
		t.Errorf("the stale copy is still cached (EXISTS = %d, %v)", n, err)
	}
}
