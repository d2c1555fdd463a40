package session_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
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

// BenchmarkRedisCluster1M runs the read and write scenarios on a real
// Redis Cluster (3 primaries, 3 replicas, loopback) holding 1,000,000
// sessions of 10,000 users, and reports Redis memory per session. Seeding
// takes a minute or two; run it on its own:
//
//	go test -run '^$' -bench RedisCluster1M -benchtime 3s .
//
// SESSION_BENCH_SESSIONS sets another session count (for a quick try);
// SESSION_BENCH_LISTPACK_VALUE sets the nodes' hash-max-listpack-value
// (Redis default 64: a session holding a longer value, such as most
// browsers' User-Agent, is stored as a hashtable, at about twice the memory).
func BenchmarkRedisCluster1M(b *testing.B) {
	total, users := 1_000_000, 10_000
	if v := os.Getenv("SESSION_BENCH_SESSIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			b.Fatalf("SESSION_BENCH_SESSIONS=%q: want a number >= 100", v)
		}
		total, users = n, max(1, n/100)
	}
	cluster := redistest.StartCluster(b)
	cc := cluster.Client(b, &redis.ClusterOptions{PoolSize: 64, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	ctx := context.Background()
	const prefix = "session:"
	store := newRedisStore(b, cc, session.RedisOptions{Prefix: prefix})
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: 12 * time.Hour, TouchInterval: time.Hour}

	if v := os.Getenv("SESSION_BENCH_LISTPACK_VALUE"); v != "" {
		err := cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.ConfigSet(ctx, "hash-max-listpack-value", v).Err()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	before := clusterUsedMemory(b, cc)
	start := time.Now()
	keys := seedSessions(b, cc, prefix, total, users)
	seeded := time.Since(start)
	after := clusterUsedMemory(b, cc)
	perSession := float64(after-before) / float64(total)
	sampled := sampleMemoryUsage(b, cc, prefix, keys, users)
	b.Logf("seeded %d sessions of %d users in %v; primaries' used_memory grew %d MB: %.0f bytes per session (INFO delta), %.0f by MEMORY USAGE of the hash plus its share of the index and generation",
		total, users, seeded.Round(time.Millisecond), (after-before)>>20, perSession, sampled)

	// The store must read what the bulk path wrote, or the numbers mean nothing.
	for i := range 100 {
		k := keys[rand.IntN(len(keys))]
		if _, err := store.Load(ctx, k, session.Client{UserAgent: "bench"}, p); err != nil {
			b.Fatalf("seeded session %d does not load: %v", i, err)
		}
	}

	report := func(b *testing.B) {
		b.ReportMetric(perSession, "B/session")
		b.ReportMetric(float64(total), "sessions")
	}
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			k := keys[rand.IntN(len(keys))]
			if _, err := store.Load(ctx, k, session.Client{UserAgent: "bench"}, p); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("write", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			k := keys[rand.IntN(len(keys))]
			if _, err := store.Load(ctx, k, session.Client{UserAgent: "bench"}, p); err != nil {
				b.Fatal(err)
			}
			if err := store.Update(ctx, k, session.Change{Set: map[string]string{"cart": "3"}}, p); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("read-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := keys[rand.IntN(len(keys))]
				if _, err := store.Load(ctx, k, session.Client{UserAgent: "bench"}, p); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b)
	})
	b.Run("write-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := keys[rand.IntN(len(keys))]
				if _, err := store.Load(ctx, k, session.Client{UserAgent: "bench"}, p); err != nil {
					b.Error(err)
					return
				}
				if err := store.Update(ctx, k, session.Change{Set: map[string]string{"cart": "3"}}, p); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b)
	})
}

// seedSessions writes total sessions of users users straight into the
// layout RedisStore uses (README, "Redis layout"), without Lua, in
// pipelines of whole users, from several goroutines: what a million
// scripted logins would leave behind, in a fraction of the time.
func seedSessions(b *testing.B, cc *redis.ClusterClient, prefix string, total, users int) []session.Key {
	b.Helper()
	ctx := context.Background()
	keys := make([]session.Key, total)
	now := time.Now().UnixMilli()
	expires := now + (12 * time.Hour).Milliseconds()
	idle := time.Hour
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	const usersPerPipeline = 5
	for range 8 {
		wg.Go(func() {
			for {
				first := int(next.Add(usersPerPipeline)) - usersPerPipeline
				if first >= users || failed.Load() != nil {
					return
				}
				pipe := cc.Pipeline()
				for u := first; u < min(first+usersPerPipeline, users); u++ {
					userID := fmt.Sprintf("user-%d@example.com", u)
					up := prefix + "{u" + base64.RawURLEncoding.EncodeToString([]byte(userID)) + "}:"
					gen := "1"
					members := make([]redis.Z, 0, total/users+1)
					for i := u; i < total; i += users {
						k := sessiontest.NewKey(userID)
						keys[i] = k
						pipe.HSet(ctx, up+k.Hash,
							"@u", userID, "@c", now, "@s", now, "@x", expires, "@g", gen,
							"@id", fmt.Sprintf("0190b3c4-0000-7000-8000-%012d", i),
							"@ua", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
							"@ip", "203.0.113.7",
							"v:csrf", "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4", "v:cart", "2", "v:theme", "dark")
						pipe.PExpire(ctx, up+k.Hash, idle)
						members = append(members, redis.Z{Score: float64(expires), Member: k.Hash})
					}
					pipe.ZAdd(ctx, up+"idx", members...)
					pipe.PExpire(ctx, up+"idx", 12*time.Hour)
					pipe.Set(ctx, up+"gen", gen, 12*time.Hour)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatalf("seeding: %v", err)
	}
	return keys
}

// clusterUsedMemory sums used_memory over the primaries.
func clusterUsedMemory(b *testing.B, cc *redis.ClusterClient) int64 {
	b.Helper()
	var sum atomic.Int64
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return err
				}
				sum.Add(n)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return sum.Load()
}

// sampleMemoryUsage estimates bytes per session from MEMORY USAGE: a
// sample of session hashes, plus each user's index and generation shared
// over that user's sessions.
func sampleMemoryUsage(b *testing.B, cc *redis.ClusterClient, prefix string, keys []session.Key, users int) float64 {
	b.Helper()
	ctx := context.Background()
	const samples = 200
	var sum float64
	for range samples {
		k := keys[rand.IntN(len(keys))]
		up := prefix + "{u" + base64.RawURLEncoding.EncodeToString([]byte(k.UserID)) + "}:"
		h, err := cc.MemoryUsage(ctx, up+k.Hash).Result()
		if err != nil {
			b.Fatal(err)
		}
		idx, err := cc.MemoryUsage(ctx, up+"idx").Result()
		if err != nil {
			b.Fatal(err)
		}
		gen, err := cc.MemoryUsage(ctx, up+"gen").Result()
		if err != nil {
			b.Fatal(err)
		}
		perUser := float64(len(keys)) / float64(users)
		sum += float64(h) + float64(idx+gen)/perUser
	}
	return sum / samples
}
