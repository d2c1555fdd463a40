package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionkit/session/sessiontest/redistest"
)

// BenchmarkReadPipeline sends a session read's commands through go-redis
// alone, with no middleware, from 16 goroutines per core as parallel-read
// does: raw's pipeline (HGETALL of 3 fields, PEXPIRE) and variants of
// ours' (the PEXPIRE … GT replica guard, TIME, HGETALL of a hash of 9
// fields as stored today or of 4 with the metadata packed into one field).
// It tells how much of parallel-read's gap the commands themselves make.
//
//	go test -run '^$' -bench ReadPipeline -benchtime 300ms -count 6 | benchstat -col /pipeline -
func BenchmarkReadPipeline(b *testing.B) {
	srv := redistest.Start(b)
	rdb := srv.Client(b)
	ctx := context.Background()
	const sessions = 1000
	variants := []struct {
		name        string
		fields      int
		guard, time bool
		slide       bool // raw's PEXPIRE on every read
	}{
		{"raw", 3, false, false, true},
		{"ours", 9, true, true, false},
		{"ours-packed", 4, true, true, false},
		{"ours-no-guard-no-time", 9, false, false, false},
		{"ours-packed-no-guard-no-time", 4, false, false, false},
	}
	for _, v := range variants {
		keys := make([]string, sessions)
		for i := range keys {
			keys[i] = fmt.Sprintf("pipeline:%d:%d", v.fields, i)
			args := make([]any, 0, 2*v.fields)
			for f := range v.fields {
				args = append(args, "f"+strconv.Itoa(f), strconv.FormatInt(time.Now().UnixMilli(), 10))
			}
			if err := rdb.HSet(ctx, keys[i], args...).Err(); err != nil {
				b.Fatal(err)
			}
			if err := rdb.Expire(ctx, keys[i], time.Hour).Err(); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("pipeline="+v.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					key := keys[next.Add(1)%sessions]
					pipe := rdb.Pipeline()
					if v.guard {
						pipe.Do(ctx, "PEXPIRE", key, 0, "GT")
					}
					if v.time {
						pipe.Time(ctx)
					}
					h := pipe.HGetAll(ctx, key)
					if v.slide {
						pipe.PExpire(ctx, key, time.Hour)
					}
					if _, err := pipe.Exec(ctx); err != nil || len(h.Val()) != v.fields {
						b.Errorf("%s: %v, %d fields", v.name, err, len(h.Val()))
						return
					}
				}
			})
		})
	}
}
