// Command demo is the session demo app (the one `go run ./example` starts
// from the repository root) with two more stores, from this module:
//
//	-store postgres   pgstore.Store: every session in PostgreSQL
//	-store pgcache    pgstore.CachedStore: PostgreSQL, with Redis in front
//
// The PostgreSQL is the database DATABASE_URL names, or, with -embedded, a
// private server started from the installed PostgreSQL binaries (initdb,
// pg_ctl, postgres) in a temporary directory that is removed when the demo
// stops, as the tests' pgtest does; when the demo runs as root, that server
// runs as the "postgres" or "nobody" user. The Redis in front with pgcache
// is REDIS_URL's, or an embedded miniredis when it is unset.
//
// At start-up the demo calls pgstore.Migrate, which creates the store's
// tables and indexes if they are missing and changes nothing else; the
// database user needs the right to create them. From this directory:
//
//	DATABASE_URL=postgres://user:pass@127.0.0.1:5432/db go run . -store postgres
//	DATABASE_URL=postgres://user:pass@127.0.0.1:5432/db go run . -store pgcache
//	go run . -store postgres -embedded
//
// Every flag of the root demo works here too (-addr, -insecure, -store
// redis or memory, -fallback with Redis).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionkit/session/example/demo"
	"github.com/sessionkit/session/pgstore"
	"github.com/sessionkit/session/pgstore/pgtest"
)

func main() {
	pc := &pgConfig{databaseURL: os.Getenv("DATABASE_URL")}
	flag.BoolVar(&pc.embedded, "embedded", false, "with -store postgres or pgcache: start a private PostgreSQL from the installed binaries in a temporary directory, instead of using DATABASE_URL")
	demo.Main(pc.stores())
}

// pgConfig is where the PostgreSQL comes from.
type pgConfig struct {
	databaseURL string // DATABASE_URL
	embedded    bool   // -embedded: a private server instead
}

func (pc *pgConfig) stores() map[string]demo.StoreOpener {
	return map[string]demo.StoreOpener{"postgres": pc.openStore, "pgcache": pc.openCachedStore}
}

// postgres is an open, migrated pgstore.Store and what it runs on.
type postgres struct {
	store *pgstore.Store
	name  string
	close func()
}

// openPostgres connects (or starts the embedded server), runs Migrate and
// opens the store.
func (pc *pgConfig) openPostgres(ctx context.Context, cfg demo.Config, logger *slog.Logger) (_ *postgres, err error) {
	if cfg.Fallback {
		return nil, fmt.Errorf("-fallback wraps Redis in a FallbackStore; it does not go with -store=%s", cfg.Store)
	}
	var closes []func()
	closeAll := func() {
		for i := len(closes) - 1; i >= 0; i-- {
			closes[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()

	dsn := pc.databaseURL
	switch {
	case pc.embedded && dsn != "":
		return nil, errors.New("-embedded starts its own PostgreSQL, and DATABASE_URL names another: unset one of them")
	case pc.embedded:
		logger.Info("starting a private PostgreSQL in a temporary directory (-embedded)")
		srv, err := pgtest.Launch()
		if err != nil {
			return nil, fmt.Errorf("-embedded: %w", err)
		}
		closes = append(closes, srv.Close)
		dsn = srv.DSN
	case dsn == "":
		return nil, fmt.Errorf("-store=%s needs DATABASE_URL (for example postgres://user:password@127.0.0.1:5432/dbname), or -embedded to start a private PostgreSQL from the installed binaries", cfg.Store)
	}

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	closes = append(closes, pool.Close)
	cc := pool.Config().ConnConfig
	name := fmt.Sprintf("PostgreSQL at %s:%d/%s", cc.Host, cc.Port, cc.Database)
	if pc.embedded {
		name = "PostgreSQL (embedded, in a temporary directory)"
	}
	ping, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = pool.Ping(ping)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", name, err)
	}
	// The store never creates its tables on its own; the demo does it here,
	// once, before it serves anything.
	if err := pgstore.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	logger.Info("pgstore.Migrate: the session tables are in place", "db", name)
	st, err := pgstore.New(pool, pgstore.Options{CleanupInterval: time.Minute})
	if err != nil {
		return nil, err
	}
	closes = append(closes, func() { st.Close() })
	return &postgres{store: st, name: name, close: closeAll}, nil
}

func (pc *pgConfig) openStore(ctx context.Context, cfg demo.Config, logger *slog.Logger) (*demo.Store, error) {
	pg, err := pc.openPostgres(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	return &demo.Store{Store: pg.store, Name: pg.name, Close: pg.close}, nil
}

func (pc *pgConfig) openCachedStore(ctx context.Context, cfg demo.Config, logger *slog.Logger) (*demo.Store, error) {
	pg, err := pc.openPostgres(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	r, err := demo.OpenRedis(ctx, cfg, logger)
	if err != nil {
		pg.close()
		return nil, err
	}
	cached, err := pgstore.NewCachedStore(pg.store, r.Client, pgstore.CachedOptions{})
	if err != nil {
		r.Close()
		pg.close()
		return nil, err
	}
	return &demo.Store{
		Store: cached,
		Name:  pg.name + " with " + r.Name + " in front (CachedStore)",
		Close: func() {
			cached.Close()
			r.Close()
			pg.close()
		},
	}, nil
}
