package bench

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session/sessiontest/redistest"
)

// memorySessions is how many sessions the memory benchmark averages over.
const memorySessions = 200

// BenchmarkRedisMemory reports the Redis memory one session takes (MEMORY
// USAGE summed over every key the library wrote, averaged over 200
// sessions), for a session holding the "new" scenario's three values. It
// measures no time; run it once (-benchtime 1x).
func BenchmarkRedisMemory(b *testing.B) {
	srv := redistest.Start(b)
	stats := srv.Client(b)
	libs, _ := startLibs(b, srv.Addr, redisLibs)
	for _, l := range libs {
		b.Run("lib="+l.name, func(b *testing.B) {
			bytes, keys, err := memoryPerSession(context.Background(), stats, l, memorySessions)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(bytes, "redis-B/session")
			b.ReportMetric(keys, "keys/session")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// memoryPerSession empties the server, creates n sessions through l, and
// returns the average MEMORY USAGE and key count per session.
func memoryPerSession(ctx context.Context, stats *redis.Client, l *lib, n int) (bytesPer, keysPer float64, err error) {
	if err := stats.FlushAll(ctx).Err(); err != nil {
		return 0, 0, err
	}
	for range n {
		if l.newSession() == "" {
			return 0, 0, errNoCookie(l)
		}
	}
	var total, keys int64
	iter := stats.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		used, err := stats.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err != nil {
			return 0, 0, err
		}
		total += used
		keys++
	}
	if err := iter.Err(); err != nil {
		return 0, 0, err
	}
	return float64(total) / float64(n), float64(keys) / float64(n), nil
}

func TestEverySessionTakesRedisMemory(t *testing.T) {
	srv := redistest.Start(t)
	stats := srv.Client(t)
	libs, _ := startLibs(t, srv.Addr, redisLibs)
	for _, l := range libs {
		bytes, keys, err := memoryPerSession(context.Background(), stats, l, 10)
		if err != nil {
			t.Fatal(err)
		}
		if keys != 1 || bytes < 50 {
			t.Errorf("%s: %.0f keys and %.0f bytes per session; want one key of some size", l.name, keys, bytes)
		}
	}
}
