package bench

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionkit/session/sessiontest/redistest"
)

// Scenario names, as they appear in benchmark names.
const (
	scNew          = "new"           // no cookie; the handler stores 3 small values
	scRead         = "read"          // valid cookie; reads 2 values
	scWrite        = "write"         // valid cookie; increments a counter
	scParallelRead = "parallel-read" // read, from many goroutines over 1,000 sessions
	scUntouched    = "untouched"     // valid cookie; the handler never loads the session
	scLogin        = "login"         // two requests: an anonymous visit that stores 3 values, then sign-in
)

var scenarios = []string{scNew, scRead, scWrite, scParallelRead, scUntouched, scLogin}

// parallelSessions is how many sessions parallel-read spreads over.
const parallelSessions = 1000

// BenchmarkSession drives every library through its middleware, request
// after request, with the cookies it set, on a private redis-server and,
// for the PostgreSQL libraries, a private PostgreSQL (left out, with a
// message, when PostgreSQL is not installed). Besides time and allocations
// it reports, per request, the Redis round trips (rt/op, counted by a
// go-redis hook), the commands Redis executed (cmds/op, from INFO
// commandstats: commands inside scripts count), the PostgreSQL round trips
// (pg-rt/op, counted on the wire: see PGCounter), and the CPU time used by
// this process (go-cpu-µs/op) and by redis-server (redis-cpu-µs/op, from
// INFO cpu).
//
//	go test -run '^$' -bench Session -benchtime 200ms -count 6 | benchstat -col /lib -
func BenchmarkSession(b *testing.B) {
	srv := redistest.Start(b)
	stats := srv.Client(b)
	names := append([]string{}, redisLibs...)
	dsn := postgresIfInstalled(b)
	if dsn != "" {
		names = append(names, pgLibs...)
	}
	names = append(names, memoryLibs...)
	libs, counters := startLibsOn(b, srv.Addr, dsn, names)
	none := newNone()
	for _, sc := range scenarios {
		list := libs
		if sc == scUntouched {
			list = append(append([]*lib{}, libs...), none)
		}
		for _, l := range list {
			b.Run("scenario="+sc+"/lib="+l.name, func(b *testing.B) {
				ctx := context.Background()
				c := counters[l.name]
				run := prepare(b, l, sc)
				var rt0, cmd0, pg0 int64
				if l.pg != nil {
					pg0 = l.pg.RoundTrips()
				}
				var redis0 time.Duration
				if l.client != nil {
					rt0 = c.RoundTrips()
					var err error
					if cmd0, err = commandStats(ctx, stats); err != nil {
						b.Fatal(err)
					}
					if redis0, err = redisCPU(ctx, stats); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				proc0 := processCPU()
				n := run()
				// CPU time per request moves far less than wall time when
				// other jobs share the machine.
				if n > 0 {
					b.ReportMetric(float64((processCPU()-proc0).Nanoseconds())/1e3/float64(n), "go-cpu-µs/op")
				}
				if l.pg != nil && n > 0 {
					b.ReportMetric(float64(l.pg.RoundTrips()-pg0)/float64(n), "pg-rt/op")
				}
				if l.client != nil && n > 0 {
					cmd1, err := commandStats(ctx, stats)
					if err != nil {
						b.Fatal(err)
					}
					redis1, err := redisCPU(ctx, stats)
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(c.RoundTrips()-rt0)/float64(n), "rt/op")
					b.ReportMetric(float64(cmd1-cmd0)/float64(n), "cmds/op")
					b.ReportMetric(float64((redis1-redis0).Nanoseconds())/1e3/float64(n), "redis-cpu-µs/op")
				}
			})
		}
	}
}

// prepare sets up scenario sc for l (the sessions it needs) and returns
// what runs the timed requests and returns how many operations ran.
func prepare(b *testing.B, l *lib, sc string) (run func() int) {
	switch sc {
	case scNew:
		return func() int { return loop(b, l, newRequest(pathNew, "")) }
	case scRead, scWrite, scUntouched:
		cookie := l.newSession()
		if l.name == "none" {
			cookie = "__Host-session=" + strings.Repeat("x", 120)
		}
		if cookie == "" {
			b.Fatalf("%s: no session cookie", l.name)
		}
		path := map[string]string{scRead: pathRead, scWrite: pathWrite, scUntouched: pathUntouched}[sc]
		return func() int { return loop(b, l, newRequest(path, cookie)) }
	case scParallelRead:
		return parallelRead(b, l)
	case scLogin:
		return func() int { return login(b, l) }
	}
	b.Fatalf("no scenario %q", sc)
	return nil
}

// loop serves base, copied afresh each time (handlers may change the
// request they get), through l until the benchmark is done.
func loop(b *testing.B, l *lib, base *http.Request) (ops int) {
	w := newSink()
	for b.Loop() {
		w.reset()
		r := *base
		l.handler.ServeHTTP(w, &r)
		if w.code >= 400 {
			b.Fatalf("%s %s: status %d", l.name, base.URL.Path, w.code)
		}
		ops++
	}
	return ops
}

func parallelRead(b *testing.B, l *lib) (run func() int) {
	reqs := make([]*http.Request, parallelSessions)
	for i := range reqs {
		cookie := l.newSession()
		if cookie == "" {
			b.Fatalf("%s: no session cookie", l.name)
		}
		reqs[i] = newRequest(pathRead, cookie)
	}
	return func() int {
		var next, count atomic.Int64
		b.SetParallelism(16) // requests wait on Redis: 2 goroutines per CPU would idle it
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := newSink()
			for pb.Next() {
				w.reset()
				r := *reqs[next.Add(1)%parallelSessions]
				l.handler.ServeHTTP(w, &r)
				if w.code >= 400 {
					b.Errorf("%s: status %d", l.name, w.code)
					return
				}
				count.Add(1)
			}
		})
		return int(count.Load())
	}
}

// login is two requests per operation: an anonymous visit that stores the
// three values, then the sign-in, carrying the cookie the first one set.
func login(b *testing.B, l *lib) (ops int) {
	w := newSink()
	anon, signIn := newRequest(pathNew, ""), newRequest(pathLogin, "")
	for b.Loop() {
		w.reset()
		r := *anon
		l.handler.ServeHTTP(w, &r)
		cookie := sessionCookie(w.h, l.cookieName)
		if cookie == "" {
			b.Fatalf("%s: no session cookie", l.name)
		}
		w.reset()
		r = *signIn
		r.Header = http.Header{"Cookie": {cookie}}
		l.handler.ServeHTTP(w, &r)
		if w.code >= 400 {
			b.Fatalf("%s login: status %d", l.name, w.code)
		}
		ops++
	}
	return ops
}
