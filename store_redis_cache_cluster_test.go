package session_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

// clusterPrimaries is how many primaries redistest.StartCluster makes.
const clusterPrimaries = 3

// newCachedClusterStore returns a RedisStore on cc with the local cache on
// and prefix, once it tracks every primary.
func newCachedClusterStore(t *testing.T, cc *redis.ClusterClient, prefix string) *session.RedisStore {
	t.Helper()
	s := newRedisStore(t, cc, session.RedisOptions{Prefix: prefix, LocalCache: session.LocalCacheOptions{Size: 1000}})
	t.Cleanup(func() { s.Close() })
	waitFor(t, "tracking on every primary", 10*time.Second, func() bool {
		epochs := session.CacheNodeEpochs(s)
		for _, e := range epochs {
			if e == 0 {
				return false
			}
		}
		return len(epochs) == clusterPrimaries
	})
	return s
}

// sessionKeyName is the name of k's hash in Redis (see RedisStore's layout).
func sessionKeyName(prefix string, k session.Key) string {
	tag := "a" + k.Hash[:8]
	if k.UserID != "" {
		tag = "u" + base64.RawURLEncoding.EncodeToString([]byte(k.UserID))
	}
	return prefix + "{" + tag + "}:" + k.Hash
}

// primaryOf returns the address of the primary cc maps k's keys to.
func primaryOf(t *testing.T, cc *redis.ClusterClient, prefix string, k session.Key) string {
	t.Helper()
	node, err := cc.MasterForKey(t.Context(), sessionKeyName(prefix, k))
	if err != nil {
		t.Fatal(err)
	}
	return node.Options().Addr
}

// keysOnEveryPrimary returns one new session key of a user per primary.
func keysOnEveryPrimary(t *testing.T, cc *redis.ClusterClient, prefix string) map[string]session.Key {
	t.Helper()
	out := map[string]session.Key{}
	for i := 0; len(out) < clusterPrimaries; i++ {
		if i == 1000 {
			t.Fatalf("users on %d primaries only", len(out))
		}
		k := sessiontest.NewKey("user-" + strconv.Itoa(i))
		if addr := primaryOf(t, cc, prefix, k); out[addr] == (session.Key{}) {
			out[addr] = k
		}
	}
	return out
}

// clusterCalls counts the commands every primary ran for clients, leaving
// out heartbeats (PING), this count's INFO and slot-map reads (CLUSTER
// SHARDS and SLOTS, which the cache's watch and the client send on their own clock,
// not per read).
func clusterCalls(t *testing.T, cc *redis.ClusterClient) int64 {
	t.Helper()
	var mu sync.Mutex
	var n int64
	err := cc.ForEachMaster(t.Context(), func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_ping" || name == "cmdstat_info" || strings.HasPrefix(name, "cmdstat_cluster") {
				continue
			}
			calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
			v, err := strconv.ParseInt(calls, 10, 64)
			if err != nil {
				return fmt.Errorf("commandstats line %q: %w", line, err)
			}
			mu.Lock()
			n += v
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRedisClusterWithLocalCache(t *testing.T) {
	skipIfShort(t, "starts a six-node Redis Cluster")
	cluster := redistest.StartCluster(t)
	cc := cluster.Client(t, nil)
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour, TouchInterval: time.Minute}

	t.Run("passes the store conformance suite", func(t *testing.T) {
		sessiontest.RunStoreTests(t, sessiontest.Harness{
			New: func(t *testing.T) session.Store {
				prefix := freshPrefix()
				t.Cleanup(func() { assertClusterKeysHaveTTL(t, cc, prefix) })
				return newCachedClusterStore(t, cc, prefix)
			},
			Advance: func(t *testing.T, d time.Duration) { time.Sleep(d) },
			Unit:    100 * time.Millisecond,
		})
	})

	t.Run("a cached read runs no command on any node", func(t *testing.T) {
		prefix := freshPrefix()
		a := newCachedClusterStore(t, cc, prefix)
		b := newRedisStore(t, cc, session.RedisOptions{Prefix: prefix})
		keys := keysOnEveryPrimary(t, cc, prefix)
		for _, k := range keys {
			if _, err := b.Create(t.Context(), k, session.Record{Info: session.Info{ID: "id-" + k.Hash[:8]}, Values: map[string]string{"a": "1"}}, p); err != nil {
				t.Fatal(err)
			}
			awaitCached(t, a, k, p)
		}
		before := clusterCalls(t, cc)
		for range 100 {
			for _, k := range keys {
				rec, err := a.Load(t.Context(), k, session.Client{}, p)
				if err != nil || rec.Values["a"] != "1" || rec.ID != "id-"+k.Hash[:8] {
					t.Fatalf("cached read = %+v, %v", rec, err)
				}
			}
		}
		if got := clusterCalls(t, cc) - before; got != 0 {
			t.Errorf("%d cached reads on %d primaries ran %d commands, want 0", 100*len(keys), len(keys), got)
		}
	})

	t.Run("a write on another instance drops the entry on every primary", func(t *testing.T) {
		prefix := freshPrefix()
		a := newCachedClusterStore(t, cc, prefix)
		b := newRedisStore(t, cc, session.RedisOptions{Prefix: prefix})
		ch := reports(a)
		for addr, k := range keysOnEveryPrimary(t, cc, prefix) {
			if _, err := b.Create(t.Context(), k, session.Record{Info: session.Info{ID: "x"}, Values: map[string]string{"a": "1"}}, p); err != nil {
				t.Fatal(err)
			}
			for round := 1; round <= 2; round++ {
				awaitCached(t, a, k, p)
				updateElsewhere(t, ch, a, b, k, "changed-"+strconv.Itoa(round)+"-on-"+addr, p)
			}
		}
	})

	t.Run("a RevokeAll on another instance reaches the cache", func(t *testing.T) {
		prefix := freshPrefix()
		a := newCachedClusterStore(t, cc, prefix)
		b := newRedisStore(t, cc, session.RedisOptions{Prefix: prefix})
		ch := reports(a)
		k1, k2 := sessiontest.NewKey("rita"), sessiontest.NewKey("rita")
		for _, k := range []session.Key{k1, k2} {
			if _, err := b.Create(t.Context(), k, session.Record{Info: session.Info{ID: k.Hash}}, p); err != nil {
				t.Fatal(err)
			}
			awaitCached(t, a, k, p)
		}
		if n, err := b.RevokeAll(t.Context(), "rita", session.Key{}); err != nil || n != 2 {
			t.Fatalf("RevokeAll = %d, %v; want 2", n, err)
		}
		for _, k := range []session.Key{k1, k2} {
			awaitUncached(t, ch, a, k)
			if _, err := a.Load(t.Context(), k, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("read after RevokeAll: %v, want ErrNotFound", err)
			}
		}
	})
}

// clusterNode runs one command on the node at addr.
func clusterNode(t *testing.T, addr string, args ...any) *redis.Cmd {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 5 * time.Second})
	defer c.Close()
	return c.Do(t.Context(), args...)
}

// replicaOf returns the replica following the primary at addr.
func replicaOf(t *testing.T, cluster *redistest.Cluster, addr string) *redistest.Server {
	t.Helper()
	replicas, err := cluster.Replicas()
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(addr, ":")
	for _, r := range replicas {
		info, err := clusterNode(t, r.Addr, "INFO", "replication").Text()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "master_host:"+host+"\r") && strings.Contains(info, "master_port:"+port+"\r") {
			return r
		}
	}
	t.Fatalf("no replica of %s", addr)
	return nil
}

// cachedOnEveryPrimary creates a session per primary through b and reads
// each into a's cache.
func cachedOnEveryPrimary(t *testing.T, cc *redis.ClusterClient, prefix string, a, b *session.RedisStore, p session.Policy) map[string]session.Key {
	t.Helper()
	keys := keysOnEveryPrimary(t, cc, prefix)
	for addr, k := range keys {
		if _, err := b.Create(t.Context(), k, session.Record{Info: session.Info{ID: "x"}, Values: map[string]string{"a": "1"}}, p); err != nil {
			t.Fatal(err)
		}
		// The first read may come before tracking on that primary is up.
		waitFor(t, "an entry for the session on "+addr, 5*time.Second, func() bool {
			_, err := a.Load(t.Context(), k, session.Client{}, p)
			return err == nil && session.CachedAt(a, k, time.Now())
		})
	}
	return keys
}

// TestAClusterFailoverDropsTheCache fails over one primary gracefully
// (CLUSTER FAILOVER on its replica: the old primary stays up, so its
// tracking connections live on) and kills another; each time every entry
// goes, and the next reads see what another instance wrote on the new
// primary.
func TestAClusterFailoverDropsTheCache(t *testing.T) {
	skipIfShort(t, "starts a six-node Redis Cluster and fails over two of its primaries")
	cluster := redistest.StartCluster(t)
	cc := cluster.Client(t, nil)
	prefix := freshPrefix()
	a := newCachedClusterStore(t, cc, prefix)
	b := newRedisStore(t, cluster.Client(t, nil), session.RedisOptions{Prefix: prefix, WaitReplicas: 1, WaitTimeout: time.Second})
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour, TouchInterval: time.Minute}
	ctx := t.Context()

	for _, failover := range []struct {
		name string
		do   func(t *testing.T, primary string)
	}{
		{"CLUSTER FAILOVER on the replica", func(t *testing.T, primary string) {
			replica := replicaOf(t, cluster, primary)
			if err := clusterNode(t, replica.Addr, "CLUSTER", "FAILOVER").Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"the primary killed", func(t *testing.T, primary string) {
			primaries, err := cluster.Primaries()
			if err != nil {
				t.Fatal(err)
			}
			for _, srv := range primaries {
				if srv.Addr == primary {
					srv.Kill()
					return
				}
			}
			t.Fatalf("no primary at %s", primary)
		}},
	} {
		t.Run(failover.name, func(t *testing.T) {
			keys := cachedOnEveryPrimary(t, cc, prefix, a, b, p)
			var victim string
			for addr := range keys {
				victim = addr
				break
			}
			failover.do(t, victim)
			waitFor(t, "every entry dropped", 10*time.Second, func() bool {
				for _, k := range keys {
					if session.CachedAt(a, k, time.Now()) {
						return false
					}
				}
				return true
			})
			if err := cluster.WaitHealthy(30 * time.Second); err != nil {
				t.Fatal(err)
			}
			for addr, k := range keys {
				want := "after-failover-of-" + victim
				waitFor(t, "B writes the session on "+addr, 30*time.Second, func() bool {
					return b.Update(ctx, k, session.Change{Set: map[string]string{"a": want}}, p) == nil
				})
				// The client's slot map may still name the dead primary:
				// a call that fails on it makes the store reload the map.
				waitFor(t, "A reads the session once on "+addr, 10*time.Second, func() bool {
					_, err := a.Load(ctx, k, session.Client{}, p)
					return err == nil
				})
				for range 3 {
					if rec, err := a.Load(ctx, k, session.Client{}, p); err != nil || rec.Values["a"] != want {
						t.Fatalf("read of the session once on %s after the failover = %v, %v; want a=%s", addr, rec.Values, err, want)
					}
				}
			}
			if primary := primaryOf(t, cc, prefix, keys[victim]); primary == victim {
				t.Fatalf("the client still maps the session to %s", victim)
			}
			// The new primary's tracking works: a write there drops the
			// entry read from it.
			k := keys[victim]
			waitFor(t, "an entry read from the new primary", 10*time.Second, func() bool {
				_, err := a.Load(ctx, k, session.Client{}, p)
				return err == nil && session.CachedAt(a, k, time.Now())
			})
			updateElsewhere(t, reports(a), a, b, k, "on-the-new-primary", p)
		})
	}
}

// TestAClusterReshardingDropsTheCache moves the slot of a cached session to
// another primary, as redis-cli --cluster reshard does (SETSLOT IMPORTING
// and MIGRATING, MIGRATE, SETSLOT NODE): every entry goes, and the session
// is then read, cached and invalidated on its new primary.
func TestAClusterReshardingDropsTheCache(t *testing.T) {
	skipIfShort(t, "starts a six-node Redis Cluster and moves a slot")
	cluster := redistest.StartCluster(t)
	cc := cluster.Client(t, nil)
	prefix := freshPrefix()
	a := newCachedClusterStore(t, cc, prefix)
	b := newRedisStore(t, cluster.Client(t, nil), session.RedisOptions{Prefix: prefix})
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour, TouchInterval: time.Minute}
	ctx := t.Context()
	keys := cachedOnEveryPrimary(t, cc, prefix, a, b, p)

	var from, to string
	for addr := range keys {
		if from == "" {
			from = addr
		} else if to == "" {
			to = addr
		}
	}
	moved := keys[from]
	// Another session of the same user, in the same slot, not yet read by
	// A: A's first read of it after the move likely goes by the client's
	// old map to the old primary, which answers MOVED.
	uncached := sessiontest.NewKey(moved.UserID)
	if _, err := b.Create(ctx, uncached, session.Record{Info: session.Info{ID: "u"}, Values: map[string]string{"a": "1"}}, p); err != nil {
		t.Fatal(err)
	}
	slot, err := cc.ClusterKeySlot(ctx, sessionKeyName(prefix, moved)).Result()
	if err != nil {
		t.Fatal(err)
	}
	fromID, err := clusterNode(t, from, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	toID, err := clusterNode(t, to, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	if err := clusterNode(t, to, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID).Err(); err != nil {
		t.Fatal(err)
	}
	if err := clusterNode(t, from, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID).Err(); err != nil {
		t.Fatal(err)
	}
	names, err := clusterNode(t, from, "CLUSTER", "GETKEYSINSLOT", slot, 100).StringSlice()
	if err != nil || len(names) == 0 {
		t.Fatalf("keys in slot %d: %v, %v", slot, names, err)
	}
	host, port, _ := strings.Cut(to, ":")
	args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
	for _, n := range names {
		args = append(args, n)
	}
	if err := clusterNode(t, from, args...).Err(); err != nil {
		t.Fatal(err)
	}
	// The new owner first, then the old one, then everyone else, as
	// redis-cli does.
	primaries, err := cluster.Primaries()
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{to, from} {
		if err := clusterNode(t, addr, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, srv := range primaries {
		if srv.Addr != to && srv.Addr != from {
			if err := clusterNode(t, srv.Addr, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if rec, err := a.Load(ctx, uncached, session.Client{}, p); err != nil || rec.Values["a"] != "1" {
		t.Fatalf("first read of a session in the moved slot = %v, %v", rec.Values, err)
	}
	waitFor(t, "every entry dropped", 5*time.Second, func() bool {
		for _, k := range keys {
			if session.CachedAt(a, k, time.Now()) {
				return false
			}
		}
		return true
	})
	waitFor(t, "the client maps the moved session to its new primary", 5*time.Second, func() bool {
		return primaryOf(t, cc, prefix, moved) == to
	})
	if err := b.Update(ctx, moved, session.Change{Set: map[string]string{"a": "moved"}}, p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an entry read from the new primary", 10*time.Second, func() bool {
		rec, err := a.Load(ctx, moved, session.Client{}, p)
		if err != nil || rec.Values["a"] != "moved" {
			t.Fatalf("read of the moved session = %v, %v; want a=moved", rec.Values, err)
		}
		return session.CachedAt(a, moved, time.Now())
	})
	updateElsewhere(t, reports(a), a, b, moved, "moved-and-changed", p)
}

// awaitCached reads k through s until the read leaves an entry: a read
// made as the slot-map watch drops everything (its first look, an epoch
// that ended under load) is not kept, and the next one is.
func awaitCached(t *testing.T, s *session.RedisStore, k session.Key, p session.Policy) {
	t.Helper()
	waitFor(t, "a read that leaves an entry", 5*time.Second, func() bool {
		if _, err := s.Load(t.Context(), k, session.Client{}, p); err != nil {
			t.Fatal(err)
		}
		return session.CachedAt(s, k, time.Now())
	})
}

// updateElsewhere has b set "a" to want in k, waits until Redis's report
// drops a's entry of k, and checks that a then reads the new value.
func updateElsewhere(t *testing.T, ch <-chan []string, a, b *session.RedisStore, k session.Key, want string, p session.Policy) {
	t.Helper()
	if err := b.Update(t.Context(), k, session.Change{Set: map[string]string{"a": want}}, p); err != nil {
		t.Fatal(err)
	}
	awaitUncached(t, ch, a, k)
	if rec, err := a.Load(t.Context(), k, session.Client{}, p); err != nil || rec.Values["a"] != want {
		t.Fatalf("read after another instance's update = %v, %v; want a=%s", rec.Values, err, want)
	}
}
