package bench

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Results holds benchmark measurements: name (without "Benchmark" and the
// -GOMAXPROCS suffix) -> unit -> every value seen.
type Results map[string]map[string][]float64

var procsSuffix = regexp.MustCompile(`-\d+$`)

// ParseResults reads `go test -bench` output, any number of runs.
func ParseResults(r io.Reader) (Results, error) {
	res := Results{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procsSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		if res[name] == nil {
			res[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", name, f[i], err)
			}
			res[name][f[i+1]] = append(res[name][f[i+1]], v)
		}
	}
	return res, sc.Err()
}

// Median returns the median of name's values in unit, and whether any exist.
func (r Results) Median(name, unit string) (float64, bool) {
	v := slices.Clone(r[name][unit])
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

// Target is one of the speed targets (issues 7 and 15): a ratio or difference of two
// medians from the same run, and the bound it must meet.
type Target struct {
	What     string
	A, B     string // benchmark names
	Unit     string
	Diff     bool    // A - B rather than A / B
	Max, Min float64 // bound: measured <= Max (if Max != 0) and >= Min (if Min != 0)
}

// Targets are issue 7's targets, tightened and extended by issue 15
// (write and parallel read within 1.15x raw, write no slower than scs-idle,
// redis-server CPU per read, and the local cache's).
var Targets = []Target{
	{What: "read: ours / raw", A: "Session/scenario=read/lib=ours", B: "Session/scenario=read/lib=raw", Unit: "ns/op", Max: 1.15},
	{What: "read: scs-idle / ours", A: "Session/scenario=read/lib=scs-idle", B: "Session/scenario=read/lib=ours", Unit: "ns/op", Min: 1.5},
	{What: "write: ours / raw", A: "Session/scenario=write/lib=ours", B: "Session/scenario=write/lib=raw", Unit: "ns/op", Max: 1.15},
	{What: "write: ours / scs-idle", A: "Session/scenario=write/lib=ours", B: "Session/scenario=write/lib=scs-idle", Unit: "ns/op", Max: 1},
	{What: "parallel-read: ours / raw", A: "Session/scenario=parallel-read/lib=ours", B: "Session/scenario=parallel-read/lib=raw", Unit: "ns/op", Max: 1.15},
	{What: "read, redis-server CPU: ours / raw", A: "Session/scenario=read/lib=ours", B: "Session/scenario=read/lib=raw", Unit: "redis-cpu-µs/op", Max: 1.2},
	{What: "cached read: ours-cache / raw", A: "Session/scenario=read/lib=ours-cache", B: "Session/scenario=read/lib=raw", Unit: "ns/op", Max: 0.3},
	{What: "cached write: ours-cache / raw", A: "Session/scenario=write/lib=ours-cache", B: "Session/scenario=write/lib=raw", Unit: "ns/op", Max: 0.7},
	{What: "memory read: ours-mem / scs-mem", A: "Session/scenario=read/lib=ours-mem", B: "Session/scenario=read/lib=scs-mem", Unit: "ns/op", Max: 0.25},
	{What: "memory read: ours-mem allocs/op", A: "Session/scenario=read/lib=ours-mem", Unit: "allocs/op", Max: 60},
	{What: "untouched: ours - none, ns/req (paired)", A: "UntouchedOverhead", Unit: "overhead-ns/req", Max: 300},
	{What: "untouched: ours - none, allocs/op", A: "Session/scenario=untouched/lib=ours", B: "Session/scenario=untouched/lib=none", Unit: "allocs/op", Diff: true, Max: 2},
	{What: "end-to-end read req/s: ours / scs-idle", A: "Load/scenario=read/lib=ours", B: "Load/scenario=read/lib=scs-idle", Unit: "req/s", Min: 1.3},
}

// Check measures t in r: the value, whether it meets the bound, and
// whether r had what it needs.
func (t Target) Check(r Results) (value float64, met, ok bool) {
	a, okA := r.Median(t.A, t.Unit)
	if !okA {
		return 0, false, false
	}
	value = a
	if t.B != "" {
		b, okB := r.Median(t.B, t.Unit)
		if !okB || (!t.Diff && b == 0) {
			return 0, false, false
		}
		if t.Diff {
			value = a - b
		} else {
			value = a / b
		}
	}
	met = (t.Max == 0 || value <= t.Max) && (t.Min == 0 || value >= t.Min)
	return value, met, true
}

// Bound describes the target's bound, as "<= 1.15".
func (t Target) Bound() string {
	switch {
	case t.Max != 0 && t.Min != 0:
		return fmt.Sprintf("%g..%g", t.Min, t.Max)
	case t.Max != 0:
		return fmt.Sprintf("<= %g", t.Max)
	}
	return fmt.Sprintf(">= %g", t.Min)
}

// WriteTargets prints a markdown table of every target against r, from
// medians, and returns how many were missed or missing.
func WriteTargets(w io.Writer, r Results) (missed int) {
	fmt.Fprintln(w, "| target (medians of one run) | measured | bound | met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, t := range Targets {
		v, met, ok := t.Check(r)
		switch {
		case !ok:
			missed++
			fmt.Fprintf(w, "| %s | not measured | %s | no |\n", t.What, t.Bound())
		default:
			verdict := "yes"
			if !met {
				verdict = "**no**"
				missed++
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.What, format(v), t.Bound(), verdict)
		}
	}
	return missed
}

func format(v float64) string {
	if v >= 10 || v <= -10 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// summaryLibs orders the libraries as the summary tables show them.
var summaryLibs = []string{"ours", "ours-cache", "scs-idle", "gorilla", "raw", "raw-lua", "ours-pgcache", "ours-pg", "scs-pg", "ours-mem", "scs-mem", "none"}

// WriteSummary prints markdown tables of the medians in r: per request
// (time, allocations, Redis round trips and commands, PostgreSQL round
// trips) by scenario and
// library, end to end (requests/s, p50, p99), and Redis memory per session.
func WriteSummary(w io.Writer, r Results) {
	table := func(title, prefix string, rows []string, unit string, scale float64, suffix string) {
		var libs []string
		for _, lib := range summaryLibs {
			for _, row := range rows {
				if _, ok := r.Median(prefix+row+"/lib="+lib, unit); ok {
					libs = append(libs, lib)
					break
				}
			}
		}
		if len(libs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s\n\n| |%s|\n|---|%s\n", title, " "+strings.Join(libs, " | ")+" ", strings.Repeat("---|", len(libs)))
		for _, row := range rows {
			fmt.Fprintf(w, "| %s |", cmp.Or(strings.TrimPrefix(row, "scenario="), "per session"))
			for _, lib := range libs {
				if v, ok := r.Median(prefix+row+"/lib="+lib, unit); ok {
					fmt.Fprintf(w, " %s%s |", format(v*scale), suffix)
				} else {
					fmt.Fprint(w, " |")
				}
			}
			fmt.Fprintln(w)
		}
	}
	scenarios := []string{"scenario=new", "scenario=read", "scenario=write", "scenario=parallel-read", "scenario=untouched", "scenario=login"}
	table("Time per request (median µs/op; login is two requests)", "Session/", scenarios, "ns/op", 1e-3, "")
	table("Allocations per request (allocs/op)", "Session/", scenarios, "allocs/op", 1, "")
	table("Redis round trips per request (go-redis hook)", "Session/", scenarios, "rt/op", 1, "")
	table("PostgreSQL round trips per request (counted on the wire)", "Session/", scenarios, "pg-rt/op", 1, "")
	table("Redis commands executed per request (INFO commandstats, commands inside scripts included)", "Session/", scenarios, "cmds/op", 1, "")
	table("CPU per request in the Go process (µs; steadier than time on a shared machine)", "Session/", scenarios, "go-cpu-µs/op", 1, "")
	table("CPU per request in redis-server (µs)", "Session/", scenarios, "redis-cpu-µs/op", 1, "")
	if _, ok := r.Median("UntouchedOverhead", "overhead-ns/req"); ok {
		fmt.Fprintf(w, "\nUntouched, ours and no middleware alternating in blocks of 128 requests (ns per request)\n\n| ours | none | ours - none, mean | ours - none, median over block pairs |\n|---|---|---|---|\n|")
		for _, unit := range []string{"ours-ns/req", "none-ns/req", "overhead-ns/req", "overhead-p50-ns/req"} {
			if v, ok := r.Median("UntouchedOverhead", unit); ok {
				fmt.Fprintf(w, " %s |", format(v))
			} else {
				fmt.Fprint(w, " |")
			}
		}
		fmt.Fprintln(w)
	}
	e2e := []string{"scenario=read", "scenario=write"}
	table("End to end, 64 connections: requests/s", "Load/", e2e, "req/s", 1, "")
	table("End to end, 64 connections: p50 latency (µs)", "Load/", e2e, "p50-µs", 1, "")
	table("End to end, 64 connections: p99 latency (µs)", "Load/", e2e, "p99-µs", 1, "")
	table("End to end: CPU per request in the Go process, server and load generator (µs)", "Load/", e2e, "go-cpu-µs/req", 1, "")
	table("End to end: CPU per request in redis-server (µs)", "Load/", e2e, "redis-cpu-µs/req", 1, "")
	table("Redis memory per session, 3 small values (MEMORY USAGE, bytes)", "RedisMemory", []string{""}, "redis-B/session", 1, "")
}
