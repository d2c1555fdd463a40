package session_test

import (
	"context"
	"errors"
	"fmt"
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

// The tests in this file start real Redis Clusters (six redis-servers) and
// Sentinel setups (two redis-servers, three sentinels) on loopback. They
// skip without redis-server, unless SESSION_REQUIRE_REDIS is set.

// prefixes hands out a fresh key prefix per store, so tests sharing one
// cluster never see each other's keys.
var prefixes atomic.Int64

func freshPrefix() string { return fmt.Sprintf("t%d:", prefixes.Add(1)) }

func TestRedisCluster(t *testing.T) {
	skipIfShort(t, "starts a six-node Redis Cluster")
	cluster := redistest.StartCluster(t)
	cc := cluster.Client(t, nil)

	t.Run("passes the store conformance suite", func(t *testing.T) {
		sessiontest.RunStoreTests(t, sessiontest.Harness{
			New: func(t *testing.T) session.Store {
				prefix := freshPrefix()
				t.Cleanup(func() { assertClusterKeysHaveTTL(t, cc, prefix) })
				return newRedisStore(t, cc, session.RedisOptions{Prefix: prefix})
			},
			Advance: func(t *testing.T, d time.Duration) { time.Sleep(d) },
			Unit:    100 * time.Millisecond,
		})
	})

	t.Run("every key of a user is in one slot, whatever the user ID", func(t *testing.T) {
		prefix := freshPrefix()
		store := newRedisStore(t, cc, session.RedisOptions{Prefix: prefix})
		users := []string{"{", "}", "{}", "}{", "{a}", "a{b}c", "{{x}}", "a}b{c", "*", "a:b", "a\nb", "\xff",
			strings.Repeat("{", session.MaxUserIDLength), "slot {13}", "ü{ß}"}
		for _, u := range users {
			exerciseEveryPath(t, store, u)
		}
		slots := map[string]map[int64]bool{} // user tag -> slots its keys are in
		for _, key := range clusterKeys(t, cc, prefix) {
			slot, err := cc.ClusterKeySlot(t.Context(), key).Result()
			if err != nil {
				t.Fatal(err)
			}
			tag := hashTag(key)
			if slots[tag] == nil {
				slots[tag] = map[int64]bool{}
			}
			slots[tag][slot] = true
		}
		userTags := 0
		for tag, s := range slots {
			if strings.HasPrefix(tag, "u") {
				userTags++
			}
			if len(s) != 1 {
				t.Errorf("keys tagged %q are in %d slots", tag, len(s))
			}
		}
		if userTags != len(users) {
			t.Errorf("%d user tags for %d users", userTags, len(users))
		}
	})

	t.Run("anonymous sessions spread over the primaries", func(t *testing.T) {
		prefix := freshPrefix()
		store := newRedisStore(t, cc, session.RedisOptions{Prefix: prefix})
		for range 60 {
			if _, err := store.Create(t.Context(), sessiontest.NewKey(""), session.Record{Info: session.Info{ID: "x"}}, testPolicy); err != nil {
				t.Fatal(err)
			}
		}
		var perNode []int64
		var mu sync.Mutex
		err := cc.ForEachMaster(t.Context(), func(ctx context.Context, c *redis.Client) error {
			n := int64(len(scanAll(ctx, c, prefix+"*")))
			mu.Lock()
			perNode = append(perNode, n)
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range perNode {
			if n < 5 {
				t.Errorf("anonymous sessions per primary: %v; want each to hold a share of 60", perNode)
			}
		}
	})

	t.Run("a script cache flushed on every node is reloaded per node", func(t *testing.T) {
		prefix := freshPrefix()
		store := newRedisStore(t, cc, session.RedisOptions{Prefix: prefix})
		flushScripts := func() {
			t.Helper()
			err := cc.ForEachShard(t.Context(), func(ctx context.Context, c *redis.Client) error {
				return c.ScriptFlush(ctx).Err()
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		flushScripts()
		if err := resetCommandStats(t.Context(), cc); err != nil {
			t.Fatal(err)
		}
		// Users spread over the slots: each primary meets each script with
		// its script cache empty, while the others may have loaded it.
		for i := range 12 {
			exerciseEveryPath(t, store, fmt.Sprint("flush-", i))
			flushScripts()
		}
		err := cc.ForEachMaster(t.Context(), func(ctx context.Context, c *redis.Client) error {
			info, err := c.Info(ctx, "commandstats", "errorstats").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "errorstat_NOSCRIPT:") || !strings.Contains(info, "cmdstat_eval:") {
				return fmt.Errorf("primary %s shows no NOSCRIPT followed by EVAL:\n%s", c.Options().Addr, info)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("scripts run on primaries even with ReadOnly and RouteRandomly", func(t *testing.T) {
		for _, opts := range []*redis.ClusterOptions{{ReadOnly: true}, {RouteRandomly: true}, {RouteByLatency: true}} {
			ro := cluster.Client(t, opts)
			if err := resetCommandStats(t.Context(), cc); err != nil {
				t.Fatal(err)
			}
			store := newRedisStore(t, ro, session.RedisOptions{Prefix: freshPrefix()})
			for i := range 10 {
				exerciseEveryPath(t, store, fmt.Sprint("ro-", i))
				assertLogoutSeenAtOnce(t, store)
			}
			err := cc.ForEachSlave(t.Context(), func(ctx context.Context, c *redis.Client) error {
				stats, err := c.Info(ctx, "commandstats").Result()
				if err != nil {
					return err
				}
				for _, cmd := range []string{"evalsha", "eval", "evalsha_ro", "eval_ro", "hgetall"} {
					if strings.Contains(stats, "cmdstat_"+cmd+":") {
						return fmt.Errorf("replica %s ran %s with %+v", c.Options().Addr, cmd, *opts)
					}
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
		// The instrument works: a read-only command on a ReadOnly client
		// does reach a replica.
		ro := cluster.Client(t, &redis.ClusterOptions{ReadOnly: true})
		if err := resetCommandStats(t.Context(), cc); err != nil {
			t.Fatal(err)
		}
		for i := range 30 {
			if err := ro.Get(t.Context(), fmt.Sprint("control-", i)).Err(); !errors.Is(err, redis.Nil) {
				t.Fatal(err)
			}
		}
		var onReplicas atomic.Int64
		err := cc.ForEachSlave(t.Context(), func(ctx context.Context, c *redis.Client) error {
			stats, err := c.Info(ctx, "commandstats").Result()
			if strings.Contains(stats, "cmdstat_get:") {
				onReplicas.Add(1)
			}
			return err
		})
		if err != nil || onReplicas.Load() == 0 {
			t.Errorf("control: GET on a ReadOnly client reached no replica (%v)", err)
		}
	})
}

func TestRedisSentinel(t *testing.T) {
	skipIfShort(t, "starts a primary, a replica and three sentinels")
	sentinel := redistest.StartSentinel(t)
	fc := sentinel.Client(t, nil)

	t.Run("passes the store conformance suite", func(t *testing.T) {
		sessiontest.RunStoreTests(t, sessiontest.Harness{
			New: func(t *testing.T) session.Store {
				if err := fc.FlushAll(t.Context()).Err(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { assertEveryKeyHasTTL(t, fc) })
				return newRedisStore(t, fc, session.RedisOptions{})
			},
			Advance: func(t *testing.T, d time.Duration) { time.Sleep(d) },
			Unit:    100 * time.Millisecond,
		})
	})

	t.Run("a script cache flushed on the primary is reloaded", func(t *testing.T) {
		store := newRedisStore(t, fc, session.RedisOptions{Prefix: freshPrefix()})
		for i := range 3 {
			if err := fc.ScriptFlush(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			exerciseEveryPath(t, store, fmt.Sprint("flush-", i))
		}
	})

	t.Run("scripts and reads run on the primary even with RouteRandomly", func(t *testing.T) {
		// NewFailoverClient refuses RouteRandomly; NewFailoverClusterClient
		// takes it (and ReplicaOnly, which there means ReadOnly).
		primary, err := sentinel.Primary()
		if err != nil {
			t.Fatal(err)
		}
		var replica *redistest.Server
		for _, d := range sentinel.Data {
			if d != primary {
				replica = d
			}
		}
		rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
		defer rc.Close()
		for _, opts := range []*redis.FailoverOptions{{RouteRandomly: true}, {ReplicaOnly: true}} {
			if err := rc.ConfigResetStat(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			store := newRedisStore(t, sentinel.ClusterClient(t, opts), session.RedisOptions{Prefix: freshPrefix()})
			for i := range 10 {
				exerciseEveryPath(t, store, fmt.Sprint("ro-", i))
				assertLogoutSeenAtOnce(t, store)
			}
			stats, err := rc.Info(t.Context(), "commandstats").Result()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(stats, "cmdstat_eval") || strings.Contains(stats, "cmdstat_hgetall") {
				t.Errorf("the replica ran scripts or session reads with %+v:\n%s", *opts, stats)
			}
		}
	})

	t.Run("a client that only talks to the replica fails loudly, never serves a stale session", func(t *testing.T) {
		prefix := freshPrefix()
		store := newRedisStore(t, sentinel.Client(t, &redis.FailoverOptions{ReplicaOnly: true}), session.RedisOptions{Prefix: prefix})
		_, err := store.Create(t.Context(), sessiontest.NewKey("r"), session.Record{Info: session.Info{ID: "x"}}, testPolicy)
		if err == nil || !strings.Contains(err.Error(), "READONLY") {
			t.Errorf("Create through a replica-only client: err = %v, want a READONLY error", err)
		}
		// A session the replica holds: a read carries a write that never
		// applies, so the replica refuses rather than answer.
		k := sessiontest.NewKey("r")
		primary := newRedisStore(t, fc, session.RedisOptions{Prefix: prefix, WaitReplicas: 1, WaitTimeout: time.Second})
		if _, err := primary.Create(t.Context(), k, session.Record{Info: session.Info{ID: "x"}}, testPolicy); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Load(t.Context(), k, session.Client{}, testPolicy); err == nil || !strings.Contains(err.Error(), "READONLY") {
			t.Errorf("Load through a replica-only client: err = %v, want a READONLY error", err)
		}
	})
}

var testPolicy = session.Policy{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour, TouchInterval: time.Minute}

// exerciseEveryPath runs every Store method that touches Redis for user,
// failing the test on any error (a CROSSSLOT among them).
func exerciseEveryPath(t *testing.T, store session.Store, user string) {
	t.Helper()
	ctx := t.Context()
	p := testPolicy
	p.MaxSessionsPerUser = 2
	anon := sessiontest.NewKey("")
	rec, err := store.Create(ctx, anon, session.Record{Info: session.Info{ID: "anon"}, Values: map[string]string{"a": "1"}}, p)
	if err != nil {
		t.Fatalf("Create anonymous: %v", err)
	}
	k := sessiontest.NewKey(user)
	if _, err := store.Rotate(ctx, session.Rotation{From: anon, To: k, Record: rec, Change: session.Change{Set: map[string]string{"b": "2"}}}, p); err != nil {
		t.Fatalf("Rotate (login) for %q: %v", user, err)
	}
	if _, err := store.Load(ctx, k, session.Client{UserAgent: "ua"}, p); err != nil {
		t.Fatalf("Load for %q: %v", user, err)
	}
	if err := store.Update(ctx, k, session.Change{Set: map[string]string{"c": "3"}, Delete: []string{"a"}}, p); err != nil {
		t.Fatalf("Update for %q: %v", user, err)
	}
	if _, err := store.Incr(ctx, k, "n", 1, p); err != nil {
		t.Fatalf("Incr for %q: %v", user, err)
	}
	renewed := sessiontest.NewKey(user)
	got, err := store.Load(ctx, k, session.Client{}, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Rotate(ctx, session.Rotation{From: k, To: renewed, Record: got, Renew: true}, p); err != nil {
		t.Fatalf("Rotate (renew) for %q: %v", user, err)
	}
	var others []session.Key
	for i := range 3 { // past the cap of 2: the create script revokes
		o := sessiontest.NewKey(user)
		if _, err := store.Create(ctx, o, session.Record{Info: session.Info{ID: fmt.Sprint("o", i)}}, p); err != nil {
			t.Fatalf("Create for %q: %v", user, err)
		}
		others = append(others, o)
	}
	list, err := store.List(ctx, user)
	if err != nil {
		t.Fatalf("List for %q: %v", user, err)
	}
	if len(list) != 2 {
		t.Errorf("List for %q: %d sessions, want the cap of 2", user, len(list))
	}
	victim := list[0].ID
	if victim == "o2" {
		victim = list[1].ID
	}
	if err := store.Revoke(ctx, user, victim); err != nil {
		t.Fatalf("Revoke for %q: %v", user, err)
	}
	if _, err := store.RevokeAll(ctx, user, others[2]); err != nil {
		t.Fatalf("RevokeAll for %q: %v", user, err)
	}
	if err := store.Delete(ctx, others[2]); err != nil {
		t.Fatalf("Delete for %q: %v", user, err)
	}
	if _, err := store.Load(ctx, others[2], session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Load after Delete for %q: %v, want ErrNotFound", user, err)
	}
}

// assertLogoutSeenAtOnce logs a session out and reads it straight back: a
// read served by a replica could still see it.
func assertLogoutSeenAtOnce(t *testing.T, store session.Store) {
	t.Helper()
	for range 20 {
		k := sessiontest.NewKey("logout")
		if _, err := store.Create(t.Context(), k, session.Record{Info: session.Info{ID: "x"}}, testPolicy); err != nil {
			t.Fatal(err)
		}
		if err := store.Delete(t.Context(), k); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Load(t.Context(), k, session.Client{}, testPolicy); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Load right after logout: err = %v, want ErrNotFound", err)
		}
	}
}

// clusterKeys returns every key under prefix, from every primary.
func clusterKeys(t *testing.T, cc *redis.ClusterClient, prefix string) []string {
	t.Helper()
	var mu sync.Mutex
	var keys []string
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		found := scanAll(ctx, c, prefix+"*")
		mu.Lock()
		keys = append(keys, found...)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func scanAll(ctx context.Context, c *redis.Client, match string) []string {
	var keys []string
	iter := c.Scan(ctx, 0, match, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys
}

// assertClusterKeysHaveTTL is assertEveryKeyHasTTL across the cluster.
func assertClusterKeysHaveTTL(t *testing.T, cc *redis.ClusterClient, prefix string) {
	t.Helper()
	for _, k := range clusterKeys(t, cc, prefix) {
		ttl, err := cc.Do(context.Background(), "PTTL", k).Int64()
		if err != nil {
			t.Errorf("PTTL %q: %v", k, err)
			continue
		}
		if ttl == -1 {
			t.Errorf("key %q has no TTL", k)
		}
	}
}

func resetCommandStats(ctx context.Context, cc *redis.ClusterClient) error {
	return cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
		return c.ConfigResetStat(ctx).Err()
	})
}

// waitTimeout is the WAIT bound in the WaitReplicas tests: long enough to
// tell from a round trip, short enough not to trip the cluster's failure
// detection while the replicas are paused.
const waitTimeout = 300 * time.Millisecond

func TestRedisClusterWaitReplicas(t *testing.T) {
	skipIfShort(t, "starts a six-node Redis Cluster")
	cluster := redistest.StartCluster(t)
	cc := cluster.Client(t, nil)
	replicas, err := cluster.Replicas()
	if err != nil {
		t.Fatal(err)
	}
	testWaitReplicas(t, cc, replicas)
}

func TestRedisSentinelWaitReplicas(t *testing.T) {
	skipIfShort(t, "starts a primary, a replica and three sentinels")
	sentinel := redistest.StartSentinel(t)
	primary, err := sentinel.Primary()
	if err != nil {
		t.Fatal(err)
	}
	var replicas []*redistest.Server
	for _, d := range sentinel.Data {
		if d != primary {
			replicas = append(replicas, d)
		}
	}
	testWaitReplicas(t, sentinel.Client(t, nil), replicas)
}

// timeRotation times a Rotate of a fresh session of from to one of user "wait":
// a renewal if renew, else a login.
func timeRotation(t *testing.T, store session.Store, from string, renew bool) time.Duration {
	t.Helper()
	k := sessiontest.NewKey(from)
	rec, err := store.Create(t.Context(), k, session.Record{Info: session.Info{ID: "x"}, Values: map[string]string{"a": "1"}}, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := store.Rotate(t.Context(), session.Rotation{From: k, To: sessiontest.NewKey("wait"), Record: rec, Renew: renew}, testPolicy); err != nil {
		t.Fatalf("Rotate (renew %v): %v", renew, err)
	}
	return time.Since(start)
}

// testWaitReplicas shows that with WaitReplicas a logout waits for a
// replica: at once while the replicas run, for WaitTimeout (and no more,
// and without failing) while they are paused. That it waits at all shows
// the WAIT went on the write's own connection: WAIT on another would have
// nothing to wait for.
func testWaitReplicas(t *testing.T, c redis.UniversalClient, replicas []*redistest.Server) {
	t.Helper()
	durable := newRedisStore(t, c, session.RedisOptions{Prefix: freshPrefix(), WaitReplicas: 1, WaitTimeout: waitTimeout})
	plain := newRedisStore(t, c, session.RedisOptions{Prefix: freshPrefix()})
	if err := c.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	exerciseEveryPath(t, durable, "durable") // from an empty script cache: NOSCRIPT, then EVAL with WAIT
	logout := func(store session.Store) time.Duration {
		t.Helper()
		k := sessiontest.NewKey("wait")
		if _, err := store.Create(t.Context(), k, session.Record{Info: session.Info{ID: "x"}}, testPolicy); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := store.Delete(t.Context(), k); err != nil {
			t.Fatalf("logout: %v", err)
		}
		return time.Since(start)
	}
	if d := logout(durable); d > waitTimeout/2 {
		t.Errorf("a logout waiting for running replicas took %v", d)
	}
	// Every script on every primary, so that none is timed with a NOSCRIPT
	// (which costs runDurable one more WAIT): anonymous keys spread over
	// the slots.
	for range 20 {
		timeRotation(t, durable, "wait", true)
		timeRotation(t, durable, "", false)
	}
	for _, r := range replicas {
		if err := r.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Resume() })
	}
	paused, unpaused := logout(durable), logout(plain)
	// A renewal of a user's session is one script, so it waits once; a
	// login from an anonymous session is two steps: on Cluster each waits,
	// on one primary (Sentinel) they go in one pipeline with one WAIT.
	loginWaits := time.Duration(1)
	if _, ok := c.(*redis.ClusterClient); ok {
		loginWaits = 2
	}
	renewal, login := timeRotation(t, durable, "wait", true), timeRotation(t, durable, "", false)
	for _, r := range replicas {
		if err := r.Resume(); err != nil {
			t.Fatal(err)
		}
	}
	if renewal < waitTimeout || renewal >= 2*waitTimeout {
		t.Errorf("a renewal waiting for paused replicas took %v, want about one WaitTimeout (%v)", renewal, waitTimeout)
	}
	if login < loginWaits*waitTimeout || login >= (loginWaits+1)*waitTimeout {
		t.Errorf("a login from an anonymous session waiting for paused replicas took %v, want about %d WaitTimeouts (%v each)", login, loginWaits, waitTimeout)
	}
	t.Logf("with the replicas paused, a renewal took %v, a login from an anonymous session %v", renewal.Round(time.Millisecond), login.Round(time.Millisecond))
	if paused < waitTimeout || paused > waitTimeout+500*time.Millisecond {
		t.Errorf("a logout waiting for paused replicas took %v, want about the %v WaitTimeout", paused, waitTimeout)
	}
	if unpaused > waitTimeout/2 {
		t.Errorf("a logout without WaitReplicas took %v while the replicas were paused", unpaused)
	}
	t.Logf("logout with WaitReplicas 1: %v with the replicas paused (WaitTimeout %v); without: %v", paused.Round(time.Millisecond), waitTimeout, unpaused.Round(time.Millisecond))
}
