package pgstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/pgstore/pgtest"
	"github.com/sessionkit/session/sessiontest"
)

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
	if _, err := pool.Exec(context.Background(), `TRUNCATE session_sessions, session_values, session_revoked_ids, session_revoked_all`); err != nil {
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

// TestStoreConformanceOnTheDatabaseClock runs the suite again with no
// clock offset, sleeping instead: expiry is measured by PostgreSQL's own
// clock.
func TestStoreConformanceOnTheDatabaseClock(t *testing.T) {
	if testing.Short() {
		t.Skip("sleeps for several seconds")
	}
	pool := testPool(t)
	sessiontest.RunStoreTests(t, sessiontest.Harness{
		New: func(t *testing.T) session.Store {
			emptyTables(t, pool)
			return newTestStore(t, pool, Options{})
		},
		Advance: func(t *testing.T, d time.Duration) { time.Sleep(d) },
		Unit:    50 * time.Millisecond,
	})
}

var testPolicy = session.Policy{IdleTimeout: 10 * time.Minute, Lifetime: time.Hour, TouchInterval: time.Minute}

func TestStoreDetails(t *testing.T) {
	pool := testPool(t)
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, s *Store)
	}{
		{"user IDs, values and client strings are kept byte for byte, NUL and invalid UTF-8 included", func(t *testing.T, s *Store) {
			user := "a\x00b\xff{*}:\n"
			k := sessiontest.NewKey(user)
			vals := map[string]string{"\x00": "\xff\xfe", "k\xc3": "v\x00", "json\"": `{"a":1}`}
			if _, err := s.Create(ctx, k, session.Record{Info: session.Info{ID: "i\x00d", UserAgent: "ua\xff", IP: "\x00"}, Values: vals}, testPolicy); err != nil {
				t.Fatal(err)
			}
			got, err := s.Load(ctx, k, session.Client{}, testPolicy)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got.Values, vals) || got.ID != "i\x00d" || got.UserAgent != "ua\xff" || got.IP != "\x00" || got.UserID != user {
				t.Errorf("got %+v", got)
			}
			if err := s.Update(ctx, k, session.Change{Set: map[string]string{"\xff": "\x00"}, Delete: []string{"\x00"}}, testPolicy); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.Load(ctx, k, session.Client{}, testPolicy); got.Values["\xff"] != "\x00" || len(got.Values) != 3 {
				t.Errorf("after update: %q", got.Values)
			}
			if list, err := s.List(ctx, user); err != nil || len(list) != 1 || list[0].ID != "i\x00d" {
				t.Errorf("List = %+v, %v", list, err)
			}
			if list, _ := s.List(ctx, "a"); len(list) != 0 {
				t.Errorf("a prefix of the user ID lists %+v", list)
			}
		}},
		{"a remembered session keeps the idle timeout it was created with, through renewal", func(t *testing.T, s *Store) {
			long := testPolicy
			long.IdleTimeout = 24 * time.Hour
			long.Lifetime = 30 * 24 * time.Hour
			k := sessiontest.NewKey("rem")
			rec, err := s.Create(ctx, k, session.Record{Info: session.Info{ID: "r", Remembered: true}}, long)
			if err != nil {
				t.Fatal(err)
			}
			s.advance(time.Hour) // past the ordinary idle timeout, within the remembered one
			got, err := s.Load(ctx, k, session.Client{}, testPolicy)
			if err != nil || !got.Remembered {
				t.Fatalf("Load = %+v, %v; want the remembered session", got, err)
			}
			to := sessiontest.NewKey("rem")
			if _, err := s.Rotate(ctx, session.Rotation{From: k, To: to, Record: rec, Renew: true}, testPolicy); err != nil {
				t.Fatal(err)
			}
			s.advance(time.Hour)
			if got, err := s.Load(ctx, to, session.Client{}, testPolicy); err != nil || !got.Remembered {
				t.Fatalf("after renewal: Load = %+v, %v", got, err)
			}
			if list, _ := s.List(ctx, "rem"); len(list) != 1 || !list[0].Remembered {
				t.Errorf("List = %+v, want one remembered session", list)
			}
			s.advance(25 * time.Hour)
			if _, err := s.Load(ctx, to, session.Client{}, testPolicy); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("past its own idle timeout: err = %v, want ErrNotFound", err)
			}
		}},
		{"cleanup deletes expired sessions in bounded batches and keeps live ones", func(t *testing.T, s *Store) {
			short := testPolicy
			short.IdleTimeout = time.Minute
			for range 25 {
				if _, err := s.Create(ctx, sessiontest.NewKey("old"), session.Record{Values: map[string]string{"a": "1"}}, short); err != nil {
					t.Fatal(err)
				}
			}
			s.advance(2 * time.Minute)
			live := sessiontest.NewKey("new")
			if _, err := s.Create(ctx, live, session.Record{}, testPolicy); err != nil {
				t.Fatal(err)
			}
			var batches []int
			for {
				n, err := s.Cleanup(ctx, 10)
				if err != nil {
					t.Fatal(err)
				}
				batches = append(batches, n)
				if n < 10 {
					break
				}
			}
			if !slices.Equal(batches, []int{10, 10, 5}) {
				t.Errorf("batches = %v, want [10 10 5]", batches)
			}
			var rows, values int
			if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM session_sessions), (SELECT count(*) FROM session_values)`).Scan(&rows, &values); err != nil {
				t.Fatal(err)
			}
			if rows != 1 || values != 0 {
				t.Errorf("%d rows and %d values left, want the live session alone", rows, values)
			}
			if _, err := s.Load(ctx, live, session.Client{}, testPolicy); err != nil {
				t.Errorf("the live session: %v", err)
			}
		}},
		{"updates racing a delete never bring the session back", func(t *testing.T, s *Store) {
			for range 20 {
				k := sessiontest.NewKey("race")
				if _, err := s.Create(ctx, k, session.Record{}, testPolicy); err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				for i := range 8 {
					wg.Go(func() {
						err := s.Update(ctx, k, session.Change{Set: map[string]string{fmt.Sprint(i): "x"}}, testPolicy)
						if err != nil && !errors.Is(err, session.ErrNotFound) {
							t.Error(err)
						}
						if _, err := s.Incr(ctx, k, "n", 1, testPolicy); err != nil && !errors.Is(err, session.ErrNotFound) {
							t.Error(err)
						}
					})
				}
				wg.Go(func() {
					if _, err := s.RevokeAll(ctx, "race", session.Key{}); err != nil {
						t.Error(err)
					}
				})
				wg.Wait()
				if _, err := s.RevokeAll(ctx, "race", session.Key{}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Load(ctx, k, session.Client{}, testPolicy); !errors.Is(err, session.ErrNotFound) {
					t.Fatalf("Load after the revocations: %v", err)
				}
				var orphans int
				if err := pool.QueryRow(ctx, `SELECT count(*) FROM session_values WHERE hash = $1`, k.Hash).Scan(&orphans); err != nil || orphans != 0 {
					t.Fatalf("%d values left behind (%v)", orphans, err)
				}
			}
		}},
		{"logins from one user's session to another's, both ways at once, neither deadlock nor fail", func(t *testing.T, s *Store) {
			var wg sync.WaitGroup
			for i := range 40 {
				from, to := "ann", "ben"
				if i%2 == 1 {
					from, to = to, from
				}
				wg.Go(func() {
					k := sessiontest.NewKey(from)
					rec, err := s.Create(ctx, k, session.Record{Info: session.Info{ID: fmt.Sprint("x", i)}}, testPolicy)
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := s.Rotate(ctx, session.Rotation{From: k, To: sessiontest.NewKey(to), Record: rec}, testPolicy); err != nil {
						t.Errorf("Rotate %s -> %s: %v", from, to, err)
					}
					if i%5 == 0 {
						if _, err := s.RevokeAll(ctx, to, session.Key{}); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
		}},
		{"creating over a live session is refused, as the store's answer", func(t *testing.T, s *Store) {
			k := sessiontest.NewKey("twice")
			if _, err := s.Create(ctx, k, session.Record{}, testPolicy); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Create(ctx, k, session.Record{}, testPolicy); !errors.Is(err, session.ErrRefused) || errors.Is(err, session.ErrNotFound) {
				t.Errorf("second Create: err = %v, want ErrRefused", err)
			}
		}},
		{"cleanup forgets revocations once no restored record could need them", func(t *testing.T, s *Store) {
			rec, err := s.Create(ctx, sessiontest.NewKey("rev"), session.Record{Info: session.Info{ID: "r"}}, testPolicy)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Revoke(ctx, "rev", "r"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RevokeAll(ctx, "rev", session.Key{}); err != nil {
				t.Fatal(err)
			}
			count := func() (ids, all int) {
				t.Helper()
				if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM session_revoked_ids), (SELECT count(*) FROM session_revoked_all)`).Scan(&ids, &all); err != nil {
					t.Fatal(err)
				}
				return ids, all
			}
			if _, err := s.Cleanup(ctx, 10); err != nil {
				t.Fatal(err)
			}
			if ids, all := count(); ids != 1 || all != 1 {
				t.Fatalf("cleanup forgot live revocations: %d IDs, %d RevokeAll times", ids, all)
			}
			s.advance(time.Until(rec.Expires) + 25*time.Hour)
			if _, err := s.Cleanup(ctx, 10); err != nil {
				t.Fatal(err)
			}
			if ids, all := count(); ids != 0 || all != 0 {
				t.Errorf("after a day past the session's end: %d IDs, %d RevokeAll times left", ids, all)
			}
		}},
		{"the janitor cleans up on its own and Close stops it", func(t *testing.T, s *Store) {
			j := newTestStore(t, pool, Options{CleanupInterval: 20 * time.Millisecond, CleanupBatch: 3})
			j.clockOffset.Store(s.clockOffset.Load())
			short := testPolicy
			short.IdleTimeout = time.Millisecond
			for range 7 {
				if _, err := s.Create(ctx, sessiontest.NewKey(""), session.Record{}, short); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				var n int
				if err := pool.QueryRow(ctx, `SELECT count(*) FROM session_sessions`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d expired sessions left after 5s", n)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			emptyTables(t, pool)
			tc.run(t, newTestStore(t, pool, Options{}))
		})
	}
}

func TestMigrateIsExplicitAndRepeatable(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, srv.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := newTestStore(t, pool, Options{})
	// Before Migrate, requests fail with an error and create nothing.
	if _, err := s.Create(ctx, sessiontest.NewKey("u"), session.Record{}, testPolicy); err == nil || errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrRefused) {
		t.Fatalf("Create before Migrate: err = %v, want PostgreSQL's refusal (ErrRefused)", err)
	}
	var tables int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'session_%'`).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("%d tables exist before Migrate (%v)", tables, err)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := Migrate(ctx, pool); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, sessiontest.NewKey("u"), session.Record{}, testPolicy); err != nil {
		t.Fatalf("Create after Migrate: %v", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	if _, err := New(nil, Options{}); !errors.Is(err, session.ErrInvalidOptions) {
		t.Errorf("New(nil): err = %v", err)
	}
}
