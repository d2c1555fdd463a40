package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionkit/session/example/demo"
	"github.com/sessionkit/session/example/demo/demotest"
	"github.com/sessionkit/session/pgstore/pgtest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

var quiet = slog.New(slog.DiscardHandler)

// serve runs the demo as the command does, on a free loopback port, and
// returns its URL, what it printed, and a func that stops it.
func serve(t *testing.T, pc *pgConfig, cfg demo.Config) (base string, printed func() string, stop func() error) {
	t.Helper()
	// Insecure: Go's cookie jar sends no Secure cookie over http://localhost.
	cfg.Addr, cfg.Secret, cfg.Insecure, cfg.Stores = "127.0.0.1:0", strings.Repeat("k", 32), true, pc.stores()
	return demotest.Serve(t, func(ctx context.Context, out io.Writer) error { return demo.Run(ctx, cfg, out, quiet) })
}

func newClient() *http.Client { return &http.Client{Timeout: 10 * time.Second} }

// hasTables reports whether Migrate's tables are in the database at dsn.
func hasTables(t *testing.T, dsn string) bool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var found bool
	if err := pool.QueryRow(context.Background(), `SELECT to_regclass('session_sessions') IS NOT NULL`).Scan(&found); err != nil {
		t.Fatal(err)
	}
	return found
}

func TestTheDemoFlowOnPostgreSQL(t *testing.T) {
	t.Parallel()
	redisURL := "redis://" + redistest.Start(t).Addr + "/0"
	tests := []struct {
		name     string
		store    string
		redisURL string
		want     string // in the store name the demo prints
	}{
		{"pgstore.Store alone", "postgres", "", "PostgreSQL at 127.0.0.1:"},
		{"CachedStore on a redis-server", "pgcache", redisURL, "in front (CachedStore)"},
		{"CachedStore on the embedded miniredis", "pgcache", "", "Redis (embedded miniredis) in front (CachedStore)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pg := pgtest.Start(t) // a fresh database: the demo must create its tables
			base, printed, stop := serve(t, &pgConfig{databaseURL: pg.DSN}, demo.Config{Store: tt.store, RedisURL: tt.redisURL})
			if !strings.Contains(printed(), tt.want) {
				t.Errorf("the demo printed %q, want the store named %q", printed(), tt.want)
			}
			if !hasTables(t, pg.DSN) {
				t.Error("the demo serves, but Migrate's tables are not in the database")
			}
			demotest.Flow(t, base, newClient)
			if err := stop(); err != nil {
				t.Errorf("stopping the demo: %v", err)
			}
			if !strings.Contains(printed(), "stopped") {
				t.Errorf("the demo did not say it stopped: %q", printed())
			}
		})
	}
}

func TestEmbeddedStartsAPrivatePostgreSQLAndRemovesIt(t *testing.T) {
	t.Parallel()
	if err := pgtest.Available(); err != nil && os.Getenv("SESSION_REQUIRE_POSTGRES") == "" {
		t.Skipf("PostgreSQL binaries not found: %v", err)
	}
	pc := &pgConfig{embedded: true}
	st, err := pc.openStore(context.Background(), demo.Config{Store: "postgres"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	pgStore := st.Store
	if st.Name != "PostgreSQL (embedded, in a temporary directory)" {
		t.Errorf("store %q", st.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pgStore.List(ctx, "nobody-yet"); err != nil {
		t.Errorf("the store does not answer (no tables?): %v", err)
	}
	st.Close()
	if _, err := pgStore.List(ctx, "nobody-yet"); err == nil {
		t.Error("after Close the embedded PostgreSQL still answers")
	}
}

func TestBadPostgreSQLChoicesAreExplained(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pc   pgConfig
		cfg  demo.Config
		want string
	}{
		{"no DATABASE_URL and no -embedded", pgConfig{}, demo.Config{Store: "postgres"}, "needs DATABASE_URL"},
		{"both DATABASE_URL and -embedded", pgConfig{databaseURL: "postgres://127.0.0.1:1/x", embedded: true}, demo.Config{Store: "pgcache"}, "unset one of them"},
		{"-fallback with PostgreSQL", pgConfig{databaseURL: "postgres://127.0.0.1:1/x"}, demo.Config{Store: "postgres", Fallback: true}, "does not go with -store=postgres"},
		{"a DATABASE_URL that does not parse", pgConfig{databaseURL: "postgres://%zz"}, demo.Config{Store: "postgres"}, "DATABASE_URL"},
		{"a PostgreSQL that does not answer", pgConfig{databaseURL: "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"}, demo.Config{Store: "postgres"}, "cannot reach PostgreSQL at 127.0.0.1:1/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			open := tt.pc.stores()[tt.cfg.Store]
			st, err := open(context.Background(), tt.cfg, quiet)
			if err == nil {
				st.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}
