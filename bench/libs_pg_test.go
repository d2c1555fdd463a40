package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/sessionkit/session/pgstore/pgtest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

// startPostgres starts a private PostgreSQL with the PostgreSQL libraries'
// tables and returns its DSN. Without PostgreSQL binaries the test is
// skipped, or fails under SESSION_REQUIRE_POSTGRES (pgtest.Start).
func startPostgres(t testing.TB) string {
	t.Helper()
	srv := pgtest.Start(t)
	if err := preparePostgres(context.Background(), srv.DSN); err != nil {
		t.Fatal(err)
	}
	return srv.DSN
}

// postgresIfInstalled is startPostgres for a benchmark that measures other
// libraries too: without PostgreSQL binaries it says so and returns "", so
// that the PostgreSQL libraries are left out and the others still run. Under
// SESSION_REQUIRE_POSTGRES it fails instead.
func postgresIfInstalled(b *testing.B) string {
	b.Helper()
	if err := pgtest.Available(); err != nil {
		if os.Getenv("SESSION_REQUIRE_POSTGRES") != "" {
			b.Fatalf("PostgreSQL binaries not found, and SESSION_REQUIRE_POSTGRES is set: %v", err)
		}
		// To stderr: a benchmark with sub-benchmarks does not print its
		// own log, and this must not go unseen.
		fmt.Fprintf(os.Stderr, "%s: PostgreSQL binaries not found (%v): %s left out; apt-get install postgresql to measure them\n",
			b.Name(), err, strings.Join(pgLibs, ", "))
		return ""
	}
	return startPostgres(b)
}

func TestEveryPostgresLibraryStoresReadsWritesAndSignsIn(t *testing.T) {
	dsn := startPostgres(t)
	srv := redistest.Start(t)
	libs, _ := startLibsOn(t, srv.Addr, dsn, pgLibs)
	for _, l := range libs {
		t.Run(l.name, func(t *testing.T) {
			before := l.pg.RoundTrips()
			checkFlow(t, l)
			if l.pg.RoundTrips() == before {
				t.Fatalf("%s sent nothing to PostgreSQL", l.name)
			}
		})
	}
}

// The round trips each PostgreSQL library makes per request: to Redis
// (go-redis hook) and to PostgreSQL (counted on the wire, see PGCounter),
// pinned so that a change in a store, a driver or an adapter shows up here.
func TestPostgresRoundTripsPerRequest(t *testing.T) {
	dsn := startPostgres(t)
	srv := redistest.Start(t)
	libs, counters := startLibsOn(t, srv.Addr, dsn, pgLibs)
	type trips struct{ redis, pg int64 }
	// scs-pg: pq sends each statement with arguments as two round trips
	// (prepare, execute), and scs commits on every request that loads
	// the session when IdleTimeout is set: a read is Find and Commit.
	// ours-pgcache: a cached read is one Redis round trip and nothing in
	// PostgreSQL (until TouchInterval); writes go to PostgreSQL first.
	//                     new      read     write    untouched login    anonymous
	want := map[string]map[string]trips{
		"ours-pgcache": {pathNew: {1, 5}, pathRead: {1, 0}, pathWrite: {2, 5}, pathUntouched: {0, 0}, pathLogin: {4, 9}, "anonymous": {0, 0}},
		"ours-pg":      {pathNew: {0, 5}, pathRead: {0, 1}, pathWrite: {0, 6}, pathUntouched: {0, 0}, pathLogin: {0, 9}, "anonymous": {0, 0}},
		"scs-pg":       {pathNew: {0, 2}, pathRead: {0, 4}, pathWrite: {0, 4}, pathUntouched: {0, 4}, pathLogin: {0, 6}, "anonymous": {0, 0}},
	}
	for _, l := range libs {
		t.Run(l.name, func(t *testing.T) {
			c := counters[l.name]
			checkFlow(t, l) // warms up: statements prepared, scripts cached, connections open
			now := func() trips { return trips{c.RoundTrips(), l.pg.RoundTrips()} }
			since := func(before trips) trips {
				after := now()
				return trips{after.redis - before.redis, after.pg - before.pg}
			}
			count := func(path, cookie string) trips {
				t.Helper()
				before := now()
				if w := l.serve(path, cookie); w.Code != http.StatusOK {
					t.Fatalf("%s: %d %s", path, w.Code, strings.TrimSpace(w.Body.String()))
				}
				return since(before)
			}
			got := map[string]trips{}
			before := now()
			cookie := l.newSession()
			got[pathNew] = since(before)
			got[pathRead] = count(pathRead, cookie)
			got[pathWrite] = count(pathWrite, cookie)
			got[pathUntouched] = count(pathUntouched, cookie)
			got[pathLogin] = count(pathLogin, cookie)
			got["anonymous"] = count(pathRead, "")
			for path, n := range want[l.name] {
				if got[path] != n {
					t.Errorf("%s %s: %d Redis and %d PostgreSQL round trips, want %d and %d",
						l.name, path, got[path].redis, got[path].pg, n.redis, n.pg)
				}
			}
		})
	}
}
