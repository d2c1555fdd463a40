package bench

import (
	"strings"
	"testing"
)

const sampleOutput = `goos: linux
BenchmarkSession/scenario=read/lib=ours-2     1000   30000 ns/op   1.000 rt/op   5000 B/op   50 allocs/op
BenchmarkSession/scenario=read/lib=ours-2     1000   10000 ns/op   1.000 rt/op   5000 B/op   50 allocs/op
BenchmarkSession/scenario=read/lib=ours-2     1000   20000 ns/op   1.000 rt/op   5000 B/op   50 allocs/op
BenchmarkSession/scenario=read/lib=raw-2      1000   16000 ns/op   1.000 rt/op   1500 B/op   30 allocs/op
BenchmarkSession/scenario=untouched/lib=ours-2  1000  700 ns/op  700 B/op  4 allocs/op
BenchmarkSession/scenario=untouched/lib=none-2  1000  500 ns/op  300 B/op  2 allocs/op
BenchmarkUntouchedOverhead-2  100  900 ours-ns/req  700 none-ns/req  200 overhead-ns/req
PASS
`

func TestTargetsAreComputedFromMedians(t *testing.T) {
	r, err := ParseResults(strings.NewReader(sampleOutput))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Median("Session/scenario=read/lib=ours", "ns/op"); got != 20000 {
		t.Errorf("median of 30000, 10000, 20000 = %v, want 20000", got)
	}
	tests := []struct {
		name      string
		target    Target
		want      float64
		wantMet   bool
		wantKnown bool
	}{
		{"a ratio above its maximum is missed", target(t, "read: ours / raw"), 1.25, false, true},
		{"a single measurement within its maximum is met", target(t, "untouched: ours - none, ns/req (paired)"), 200, true, true},
		{"a difference within its maximum is met", target(t, "untouched: ours - none, allocs/op"), 2, true, true},
		{"a target without its benchmarks is not measured", target(t, "end-to-end read req/s: ours / scs-idle"), 0, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, met, ok := tc.target.Check(r)
			if v != tc.want || met != tc.wantMet || ok != tc.wantKnown {
				t.Errorf("Check = %v, %v, %v; want %v, %v, %v", v, met, ok, tc.want, tc.wantMet, tc.wantKnown)
			}
		})
	}
	var out strings.Builder
	if missed := WriteTargets(&out, r); missed != len(Targets)-2 {
		t.Errorf("missed %d, want %d:\n%s", missed, len(Targets)-2, out.String())
	}
}

// target returns the target described as what.
func target(t *testing.T, what string) Target {
	t.Helper()
	for _, tg := range Targets {
		if tg.What == what {
			return tg
		}
	}
	t.Fatalf("no target %q", what)
	return Target{}
}
