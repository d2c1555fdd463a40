// Package bench holds what the library's own module must not depend on:
// comparisons with peer libraries and integrations with metrics systems.
// It is its own module, with a replace directive to the library.
//
// The comparison (issue 7) drives each library through its own net/http
// middleware with real cookies carried between requests, on a private
// redis-server on loopback:
//
//   - ours: this library on a RedisStore; ours-mem on a MemoryStore
//   - scs-idle: alexedwards/scs v2 with its go-redis store (goredisstore)
//     and IdleTimeout set, the sliding expiry that matches ours; scs-mem:
//     scs on its memstore, also with IdleTimeout
//   - gorilla: gorilla/sessions on a go-redis store that works as
//     rbcervilla/redisstore/v9 does (gorilla_redis.go; that module is not
//     served by the module proxy here)
//   - raw: the lower bound, go-redis by hand: one pipelined HGETALL+PEXPIRE
//     for a read, that plus HSET+PEXPIRE for a write, the bare token as cookie;
//     raw-lua is raw with its read done by a script running the same two
//     commands, to show what Lua costs by itself
//   - none: no middleware at all, for the untouched scenario
//
// and, on a private PostgreSQL (pgstore/pgtest) when PostgreSQL is
// installed (BenchmarkSession leaves them out with a message otherwise, and
// fails instead under SESSION_REQUIRE_POSTGRES):
//
//   - ours-pg: this library on a pgstore.Store; ours-pgcache: on a
//     pgstore.CachedStore, Redis (the same redis-server) in front of it
//   - scs-pg: scs v2 on its postgresstore over lib/pq, with IdleTimeout set
//     as for scs-idle
//
// The tests check that every adapter really stores, reads, counts and signs
// in, and pin each library's Redis round trips per request (ours as
// DESIGN.md's table says) and the PostgreSQL libraries' PostgreSQL round
// trips. They need redis-server on PATH and skip without it, unless
// SESSION_REQUIRE_REDIS is set; the PostgreSQL ones skip without
// PostgreSQL unless SESSION_REQUIRE_POSTGRES is set. The benchmarks report
// time, allocations, round trips (rt/op to Redis, pg-rt/op to PostgreSQL)
// and commands Redis ran (cmds/op);
// BenchmarkLoad is the end-to-end load test, BenchmarkRedisMemory the memory
// per session, BenchmarkUntouchedOverhead the middleware's cost when the
// handler never loads the session. run.sh runs them all and prints
// benchstat tables, the medians and the targets (cmd/targets).
// BenchmarkReadPipeline, which run.sh leaves out, sends a read's commands
// through go-redis alone, to tell the commands' share of a read from the
// middleware's.
package bench
