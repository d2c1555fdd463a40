package pgstore_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/pgstore"
)

// Sessions in PostgreSQL with Redis in front: the schema is created by an
// explicit Migrate at start-up, never on a request. (Compiled, not run: it
// needs servers.)
func ExampleNewCachedStore() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := pgstore.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}
	pg, err := pgstore.New(pool, pgstore.Options{CleanupInterval: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	defer pg.Close()
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	cached, err := pgstore.NewCachedStore(pg, rdb, pgstore.CachedOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer cached.Close()
	m, err := session.New(session.Options{Store: cached, Secrets: [][]byte{[]byte(os.Getenv("SESSION_SECRET"))}})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe(":8080", m.Middleware(http.NotFoundHandler())))
}
