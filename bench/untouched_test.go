package bench

import (
	"slices"
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
// between separate benchmarks. It reports the mean ns per request of each
// side and of their difference (overhead-ns/req), and the median of that
// difference over pairs of blocks (overhead-p50-ns/req); allocations are in
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
	// Per pair of blocks: the mean counts everything, the garbage
	// collector's work for the middleware's allocations included; the
	// median leaves out the pairs a collection (or a burst from another
	// job) fell on, so it is the cost of the code path itself.
	var ours1, none1, diff []float64
	blocks := 0
	for b.Loop() {
		var tOurs, tNone time.Duration
		// Alternate which side goes first, so neither always follows the other.
		if blocks%2 == 0 {
			tOurs = serve(ours)
			tNone = serve(none)
		} else {
			tNone = serve(none)
			tOurs = serve(ours)
		}
		ours1 = append(ours1, float64(tOurs)/untouchedBlock)
		none1 = append(none1, float64(tNone)/untouchedBlock)
		diff = append(diff, float64(tOurs-tNone)/untouchedBlock)
		blocks++
	}
	if w.code >= 400 {
		b.Fatalf("status %d", w.code)
	}
	b.ReportMetric(mean(ours1), "ours-ns/req")
	b.ReportMetric(mean(none1), "none-ns/req")
	b.ReportMetric(mean(diff), "overhead-ns/req")
	b.ReportMetric(median(diff), "overhead-p50-ns/req")
	b.ReportMetric(0, "ns/op")
}

// median returns the median of v (which it sorts), or 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}
