package session_test

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

// The everyday reads and writes are plain MULTIs (store_redis_read.go);
// these tests pin what that must not cost: a write to an ended session
// leaves nothing behind, and a read writes nothing until a touch is due.

func TestAWriteToAnEndedSessionLeavesNoKey(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rc.Close() })
	store := newRedisStore(t, rc, session.RedisOptions{Prefix: "w:"})
	ctx := t.Context()
	ends := map[string]func(k session.Key){
		"logged out": func(k session.Key) {
			if err := store.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		},
		"revoked with its user's other sessions": func(k session.Key) {
			if _, err := store.RevokeAll(ctx, k.UserID, session.Key{}); err != nil {
				t.Fatal(err)
			}
		},
	}
	writes := map[string]func(k session.Key) error{
		"Update": func(k session.Key) error {
			return store.Update(ctx, k, session.Change{Set: map[string]string{"cart": "apples"}, Delete: []string{"x"}}, testPolicy)
		},
		"Incr": func(k session.Key) error {
			_, err := store.Incr(ctx, k, "n", 1, testPolicy)
			return err
		},
	}
	for endName, end := range ends {
		for writeName, write := range writes {
			t.Run(writeName+" after "+endName, func(t *testing.T) {
				if err := rc.FlushAll(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				k := sessiontest.NewKey("wendy")
				if _, err := store.Create(ctx, k, session.Record{Info: session.Info{ID: "id"}, Values: map[string]string{"n": "1"}}, testPolicy); err != nil {
					t.Fatal(err)
				}
				end(k)
				if err := write(k); !errors.Is(err, session.ErrNotFound) {
					t.Fatalf("%s of an ended session: err = %v, want ErrNotFound", writeName, err)
				}
				keys, err := rc.Keys(ctx, "w:*").Result()
				if err != nil {
					t.Fatal(err)
				}
				for _, key := range keys {
					if typ := rc.Type(ctx, key).Val(); typ == "hash" {
						t.Errorf("a session hash is left behind: %s = %v", key, rc.HGetAll(ctx, key).Val())
					}
				}
				if _, err := store.Load(ctx, k, session.Client{}, testPolicy); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("Load after the write: err = %v, want ErrNotFound", err)
				}
			})
		}
	}
}

// failScripts makes every script call fail before it is sent.
type failScripts struct{}

func (failScripts) DialHook(next redis.DialHook) redis.DialHook { return next }
func (failScripts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			err := errors.New("injected: the connection dropped")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}
func (failScripts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestAWriteWhoseCleanupFailedLeavesAHashThatIsNoSessionAndExpires(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rc.Close() })
	store := newRedisStore(t, rc, session.RedisOptions{Prefix: "c:"})
	ctx := t.Context()
	k := sessiontest.NewKey("carl")
	if _, err := store.Create(ctx, k, session.Record{Info: session.Info{ID: "id"}}, testPolicy); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	broken := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { broken.Close() })
	broken.AddHook(failScripts{})
	bstore := newRedisStore(t, broken, session.RedisOptions{Prefix: "c:"})
	if err := bstore.Update(ctx, k, session.Change{Set: map[string]string{"cart": "apples"}}, testPolicy); err == nil {
		t.Fatal("Update with its cleanup failing: err = nil")
	}
	keys := rc.Keys(ctx, "c:*").Val()
	var left string
	for _, key := range keys {
		if rc.Type(ctx, key).Val() == "hash" {
			left = key
		}
	}
	if left == "" {
		t.Fatalf("no hash left; the test did not exercise a failed cleanup (keys %v)", keys)
	}
	if ttl := rc.PTTL(ctx, left).Val(); ttl <= 0 || ttl > testPolicy.IdleTimeout {
		t.Errorf("the hash the write left has TTL %v, want one within IdleTimeout %v", ttl, testPolicy.IdleTimeout)
	}
	if _, err := store.Load(ctx, k, session.Client{}, testPolicy); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Load of what the write left: err = %v, want ErrNotFound", err)
	}
	if err := store.Update(ctx, k, session.Change{Set: map[string]string{"more": "1"}}, testPolicy); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("a later Update: err = %v, want ErrNotFound", err)
	}
	if n := rc.Exists(ctx, left).Val(); n != 0 {
		t.Errorf("the later Update's cleanup left the hash: %v", rc.HGetAll(ctx, left).Val())
	}

	// What such a write leaves does not stand in the way of a session
	// created under its key (FallbackStore restores sessions by key).
	if err := bstore.Update(ctx, k, session.Change{Set: map[string]string{"cart": "apples"}}, testPolicy); err == nil {
		t.Fatal("Update with its cleanup failing: err = nil")
	}
	if rc.Exists(ctx, left).Val() != 1 {
		t.Fatal("no hash left the second time")
	}
	rec, err := store.Create(ctx, k, session.Record{Info: session.Info{ID: "restored"}, Values: map[string]string{"n": "1"}}, testPolicy)
	if err != nil {
		t.Fatalf("Create over what an ended session's write left: %v", err)
	}
	if got, err := store.Load(ctx, k, session.Client{}, testPolicy); err != nil || got.Values["cart"] != "" || got.Values["n"] != "1" {
		t.Errorf("Load of the session created there = %+v, %v; want only its own values (%v)", got.Values, err, rec.Values)
	}
}

func TestAReadWritesNothingUntilATouchIsDue(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rc.Close() })
	store := newRedisStore(t, rc, session.RedisOptions{Prefix: "t:"})
	ctx := t.Context()
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour, TouchInterval: 300 * time.Millisecond}
	k := sessiontest.NewKey("tess")
	if _, err := store.Create(ctx, k, session.Record{Info: session.Info{ID: "id"}}, p); err != nil {
		t.Fatal(err)
	}
	key := ""
	for _, name := range rc.Keys(ctx, "t:*").Val() {
		if rc.Type(ctx, name).Val() == "hash" {
			key = name
		}
	}
	shortened := 10 * time.Minute
	if err := rc.PExpire(ctx, key, shortened).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(ctx, k, session.Client{UserAgent: "ua"}, p); err != nil {
		t.Fatal(err)
	}
	if ttl := rc.PTTL(ctx, key).Val(); ttl > shortened {
		t.Errorf("a read before the touch is due slid the TTL to %v", ttl)
	}
	time.Sleep(p.TouchInterval + 50*time.Millisecond)
	rec, err := store.Load(ctx, k, session.Client{UserAgent: "ua"}, p)
	if err != nil {
		t.Fatal(err)
	}
	if ttl := rc.PTTL(ctx, key).Val(); ttl <= shortened {
		t.Errorf("a read with the touch due left the TTL at %v, want it slid to about %v", ttl, p.IdleTimeout)
	}
	if rec.UserAgent != "ua" {
		t.Errorf("the touch did not record the device: %+v", rec.Info)
	}
}

func TestASessionInUseOutlivesAnIdleTimeoutShorterThanTwoTouchIntervals(t *testing.T) {
	t.Parallel()
	fake := newFakeRedis(t)
	store := newRedisStore(t, fake.client, session.RedisOptions{})
	p := session.Policy{IdleTimeout: time.Second, Lifetime: time.Hour, TouchInterval: time.Minute}
	k := sessiontest.NewKey("uma")
	rec, err := store.Create(t.Context(), k, session.Record{Info: session.Info{ID: "x"}}, p)
	if err != nil {
		t.Fatal(err)
	}
	// A read every 300ms for 6s: reads write nothing between touches, so
	// the touches (every half idle timeout here) keep the session alive,
	// each writing the last-seen time, so that the next reads are plain.
	last, touches := rec.LastSeen, 0
	for i := range 20 {
		fake.advance(300 * time.Millisecond)
		rec, err := store.Load(t.Context(), k, session.Client{}, p)
		if err != nil {
			t.Fatalf("read %d, %v after the last: %v", i, 300*time.Millisecond, err)
		}
		if !rec.LastSeen.Equal(last) {
			touches++
			last = rec.LastSeen
		}
	}
	if touches < 5 || touches > 13 {
		t.Errorf("%d touches in 20 reads 300ms apart; want about one per half idle timeout (10)", touches)
	}
}
