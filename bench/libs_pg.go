package bench

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/postgresstore"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lib/pq"

	"github.com/sessionkit/session/pgstore"
)

// pgPoolSize bounds each PostgreSQL library's connections: enough for
// parallel-read's goroutines, and the three libraries together stay under
// the test server's max_connections (200).
const pgPoolSize = 32

// scsSchema is the table alexedwards/scs/postgresstore documents.
const scsSchema = `CREATE TABLE IF NOT EXISTS sessions (
	token TEXT PRIMARY KEY,
	data BYTEA NOT NULL,
	expiry TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry_idx ON sessions (expiry);`

// PGCounter counts round trips to PostgreSQL on the wire, under any driver:
// a read from the server that follows a write to it is one wait for an
// answer. It is counted below the driver because pq sends a statement with
// arguments as two round trips (prepare, then execute) while pgx, with its
// statement cache, sends one. Connection setup counts too, so measure after
// a warm-up. It is safe for concurrent use.
type PGCounter struct{ roundTrips atomic.Int64 }

// RoundTrips returns the round trips counted so far.
func (c *PGCounter) RoundTrips() int64 { return c.roundTrips.Load() }

// wrap returns conn counting its round trips in c.
func (c *PGCounter) wrap(conn net.Conn) net.Conn { return &countingConn{Conn: conn, c: c} }

// dial connects like pgx's and pq's default dialers and counts.
func (c *PGCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{KeepAlive: 5 * time.Minute}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return c.wrap(conn), nil
}

// countingConn is a net.Conn that counts each first read after a write.
// pgx may read from a background goroutine while it writes, hence atomic.
type countingConn struct {
	net.Conn
	c     *PGCounter
	wrote atomic.Bool
}

func (cc *countingConn) Write(b []byte) (int, error) {
	cc.wrote.Store(true)
	return cc.Conn.Write(b)
}

func (cc *countingConn) Read(b []byte) (int, error) {
	if cc.wrote.Swap(false) {
		cc.c.roundTrips.Add(1)
	}
	return cc.Conn.Read(b)
}

// pqDialer is a pq.Dialer (and pq.DialerContext) that counts.
type pqDialer struct{ c *PGCounter }

func (d pqDialer) Dial(network, addr string) (net.Conn, error) {
	return d.c.dial(context.Background(), network, addr)
}

func (d pqDialer) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.c.dial(ctx, network, addr)
}

func (d pqDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.c.dial(ctx, network, addr)
}

// preparePostgres creates what the PostgreSQL libraries need in the
// database at dsn: pgstore's schema (pgstore.Migrate) and scs's table.
func preparePostgres(ctx context.Context, dsn string) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pgstore.Migrate(ctx, pool); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, scsSchema); err != nil {
		return fmt.Errorf("bench: creating scs's sessions table: %w", err)
	}
	return nil
}

// newPGPool returns a pgx pool on dsn counting its round trips in pc.
func newPGPool(dsn string, pc *PGCounter) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = pgPoolSize
	cfg.ConnConfig.DialFunc = pc.dial
	// The pool pings a connection that sat idle for over a second before
	// handing it out; that is a round trip no request asked for.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	return pgxpool.NewWithConfig(context.Background(), cfg)
}

// newOursPG is this library on a pgstore.Store ("ours-pg"), or, with a
// Redis address, on a pgstore.CachedStore over it ("ours-pgcache").
func newOursPG(name, dsn, redisAddr string, c *Counter, pc *PGCounter) (*lib, error) {
	pool, err := newPGPool(dsn, pc)
	if err != nil {
		return nil, err
	}
	pg, err := pgstore.New(pool, pgstore.Options{})
	if err != nil {
		pool.Close()
		return nil, err
	}
	if redisAddr == "" {
		l, err := newOurs(name, pg, nil, func() {
			pg.Close()
			pool.Close()
		})
		if err != nil {
			pg.Close()
			pool.Close()
			return nil, err
		}
		l.pg = pc
		return l, nil
	}
	rdb := newRedisClient(redisAddr, c)
	cached, err := pgstore.NewCachedStore(pg, rdb, pgstore.CachedOptions{})
	if err != nil {
		rdb.Close()
		pg.Close()
		pool.Close()
		return nil, err
	}
	closeAll := func() {
		cached.Close()
		rdb.Close()
		pg.Close()
		pool.Close()
	}
	l, err := newOurs(name, cached, rdb, closeAll)
	if err != nil {
		closeAll()
		return nil, err
	}
	l.pg = pc
	return l, nil
}

// newSCSPG is scs on its postgresstore over lib/pq, the driver its README
// uses, with IdleTimeout set as for scs-idle.
func newSCSPG(dsn string, pc *PGCounter) (*lib, error) {
	connector, err := pq.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	connector.Dialer(pqDialer{pc})
	db := sql.OpenDB(connector)
	// database/sql keeps 2 idle connections by default: under parallel
	// load it would open and close connections all along.
	db.SetMaxOpenConns(pgPoolSize)
	db.SetMaxIdleConns(pgPoolSize)
	// No cleanup goroutine (as for scs-mem): a benchmark's sessions do
	// not expire, and Find refuses expired ones anyway.
	l := newSCS("scs-pg", postgresstore.NewWithCleanupInterval(db, 0), nil, func() { db.Close() })
	l.pg = pc
	return l, nil
}

// Library names on PostgreSQL; ours-pgcache also uses Redis.
var pgLibs = []string{"ours-pgcache", "ours-pg", "scs-pg"}
