package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session/sessiontest/redistest"
)

// loadConns is how many connections the load generator keeps busy.
const loadConns = 64

// BenchmarkLoad is the end-to-end test: each library behind a real
// http.Server on loopback, driven over 64 keep-alive connections (one
// session each) by an in-process Go load generator, for exactly b.N
// requests (-benchtime 10000x). It reports requests/s and the p50 and p99
// latency seen by the client. The generator, the server and redis-server
// share this machine's CPUs, so compare libraries within one run.
//
//	go test -run '^$' -bench Load -benchtime 10000x -count 5 | benchstat -col /lib -
func BenchmarkLoad(b *testing.B) {
	srv := redistest.Start(b)
	stats := srv.Client(b)
	libs, _ := startLibs(b, srv.Addr, redisLibs)
	for _, sc := range []string{scRead, scWrite} {
		for _, l := range libs {
			b.Run("scenario="+sc+"/lib="+l.name, func(b *testing.B) {
				path := map[string]string{scRead: pathRead, scWrite: pathWrite}[sc]
				var redis0, proc0 time.Duration
				start := func() {
					var err error
					if redis0, err = redisCPU(context.Background(), stats); err != nil {
						b.Fatal(err)
					}
					proc0 = processCPU()
					b.ResetTimer()
				}
				res, err := runLoad(l, path, loadConns, b.N, start)
				if err != nil {
					b.Fatal(err)
				}
				proc1 := processCPU()
				redis1, err := redisCPU(context.Background(), stats)
				if err != nil {
					b.Fatal(err)
				}
				// CPU time per request is steadier than requests/s on a
				// shared machine, and says where the time goes.
				b.ReportMetric(float64((redis1-redis0).Microseconds())/float64(res.requests), "redis-cpu-µs/req")
				b.ReportMetric(float64((proc1-proc0).Microseconds())/float64(res.requests), "go-cpu-µs/req")
				b.ReportMetric(res.perSecond, "req/s")
				b.ReportMetric(float64(res.p50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(res.p99.Microseconds()), "p99-µs")
				b.ReportMetric(0, "ns/op") // wall time per request over 64 connections: req/s says it better
			})
		}
	}
}

// processCPU returns the CPU time this process has used: the server and
// the load generator both, which is the same generator for every library.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU returns the CPU time redis-server has used (INFO cpu).
func redisCPU(ctx context.Context, rdb *redis.Client) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, line := range strings.Split(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "used_cpu_sys" && name != "used_cpu_user") {
			continue
		}
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu: %s: %w", line, err)
		}
		total += time.Duration(sec * float64(time.Second))
	}
	return total, nil
}

type loadResult struct {
	requests  int
	perSecond float64
	p50, p99  time.Duration
}

// runLoad serves l on a loopback http.Server and sends n requests for path
// over conns connections, each with its own session, carrying its cookie.
// start is called when setup is done and timing begins.
func runLoad(l *lib, path string, conns, n int, start func()) (loadResult, error) {
	ts := httptest.NewServer(l.handler)
	defer ts.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	cookies := make([]string, conns)
	for i := range cookies {
		if cookies[i] = l.newSession(); cookies[i] == "" {
			return loadResult{}, fmt.Errorf("%s: no session cookie", l.name)
		}
	}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	latencies := make([][]time.Duration, conns)
	get := func(cookie string) error {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, ts.URL+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Cookie", cookie)
		req.Header.Set("User-Agent", "bench/1.0")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s %s: status %d", l.name, path, resp.StatusCode)
		}
		return err
	}
	// Open every connection before timing starts.
	for i := range conns {
		wg.Go(func() {
			if err := get(cookies[i]); err != nil {
				errOnce.Do(func() { firstErr = err })
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return loadResult{}, firstErr
	}
	start()
	began := time.Now()
	for i := range conns {
		wg.Go(func() {
			lat := make([]time.Duration, 0, n/conns+1)
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				if err := get(cookies[i]); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				lat = append(lat, time.Since(t0))
			}
			latencies[i] = lat
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	if firstErr != nil {
		return loadResult{}, firstErr
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	return loadResult{
		requests:  len(all),
		perSecond: float64(len(all)) / elapsed.Seconds(),
		p50:       percentile(all, 0.50),
		p99:       percentile(all, 0.99),
	}, nil
}

// percentile returns the q-th quantile of sorted (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func TestLoadGeneratorSendsEveryRequestWithItsSession(t *testing.T) {
	srv := redistest.Start(t)
	libs, _ := startLibs(t, srv.Addr, redisLibs)
	for _, l := range libs {
		t.Run(l.name, func(t *testing.T) {
			const conns, n = 8, 200
			res, err := runLoad(l, pathWrite, conns, n, func() {})
			if err != nil {
				t.Fatal(err)
			}
			if res.requests != n || res.perSecond <= 0 || res.p50 <= 0 || res.p99 < res.p50 {
				t.Fatalf("got %+v, want %d requests with latencies", res, n)
			}
		})
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(d, tc.q); got != tc.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}
