package pgstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/pgstore/pgtest"
	"github.com/sessionkit/session/sessiontest"
)

// sharedPG is one PostgreSQL server for the package's tests, started by the
// first test that needs it; each store test empties the tables first.
var sharedPG struct {
	once sync.Once
	srv  *pgtest.Server
	pool *pgxpool.Pool
	err  error
}

// testPool returns a pool on a migrated database of a PostgreSQL server
// this test started.
func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	srv := pgtest.Start(t)
	pool, err := pgxpool.New(context.Background(), srv.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// emptyTables deletes every session, so a test starts from nothing.
func emptyTables(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `TRUNCATE session_sessions, session_values`); err != nil {
		t.Fatal(err)
	}
}

func newTestStore(t *testing.T, pool *pgxpool.Pool, opts Options) *Store {
	t.Helper()
	s, err := New(pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// advance moves the store's clock forward: an offset added to now() in
// every statement, so the tests do not sleep.
func (s *Store) advance(d time.Duration) { s.clockOffset.Add(d.Microseconds()) }

func TestStoreConformance(t *testing.T) {
	pool := testPool(t)
	var s *Store
	sessiontest.RunStoreTests(t, sessiontest.Harness{
		New: func(t *testing.T) session.Store {
			emptyTables(t, pool)
			s = newTestStore(t, pool, Options{})
			return s
		},
		Advance: func(t *testing.T, d time.Duration) { s.advance(d) },
	})
}
