package bench

import (
	"testing"
	"time"
)

// untouchedBlock is how many requests go through one side before the
// other: long enough that the clock costs nothing, short enough that both
// sides see the same machine.
const untouchedBlock = 128

// BenchmarkUntouchedOverhead measures what this library's middleware adds
// to a request whose handler never loads the session, against the same
// handler with no middleware at all. The two alternate in blocks of 128
// requests within one benchmark, so that both sides meet the same noise
// from a busy machine; a difference of a few hundred nanoseconds is lost
// between separate benchmarks. It reports ns per request for each side
// and their difference (overhead-ns/req); allocations are in
// BenchmarkSession's untouched scenario.
func BenchmarkUntouchedOverhead(b *testing.B) {
	ours, err := newOursMemory() // the store is never reached: memory or Redis makes no difference
	if err != nil {
		b.Fatal(err)
	}
	defer ours.close()
	none := newNone()
	cookie := ours.newSession()
	if cookie == "" {
		b.Fatal(errNoCookie(ours))
	}
	base := newRequest(pathUntouched, cookie)
	w := newSink()
	serve := func(l *lib) time.Duration {
		start := time.Now()
		for range untouchedBlock {
			w.reset()
			r := *base
			l.handler.ServeHTTP(w, &r)
		}
		return time.Since(start)
	}
	var tOurs, tNone time.Duration
	blocks := 0
	for b.Loop() {
		// Alternate which side goes first, so neither always follows the other.
		if blocks%2 == 0 {
			tOurs += serve(ours)
			tNone += serve(none)
		} else {
			tNone += serve(none)
			tOurs += serve(ours)
		}
		blocks++
	}
	if w.code >= 400 {
		b.Fatalf("status %d", w.code)
	}
	n := float64(blocks * untouchedBlock)
	b.ReportMetric(float64(tOurs)/n, "ours-ns/req")
	b.ReportMetric(float64(tNone)/n, "none-ns/req")
	b.ReportMetric(float64(tOurs-tNone)/n, "overhead-ns/req")
	b.ReportMetric(0, "ns/op")
}
