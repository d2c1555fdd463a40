package session

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The everyday calls, a read and a write of a live session, go without a
// script: one pipeline or MULTI of plain commands, checked here, costs Redis about half
// the CPU of a script doing the same (README, Performance). A script runs
// only where Redis must change what it holds because of what was read:
//   - a read whose session is due a touch (its last-seen time is
//     TouchInterval old, or half its idle timeout) runs the load script
//     next, which slides the TTL and writes the last-seen time: a second
//     round trip, once per TouchInterval per session;
//   - so does a read that finds the session dead (revoked by its user's
//     generation, past its absolute end, corrupt): the script deletes it,
//     so nothing can write it back;
//   - a write that finds it so deletes what it wrote (scriptSettle).
//
// The idle TTL slides when a session is touched, not on every read: a session ends at most TouchInterval (or
// half its idle timeout) earlier than IdleTimeout after its last use, never
// later. A write in a MULTI cannot be conditional, so an update's writes
// land even on a session that turns out dead or missing; they are deleted
// before the call returns, and a hash they left is no session meanwhile:
// it has none of the metadata every read checks (the user, the absolute
// end, the generation), and it has a TTL (PEXPIRE NX).
//
// The local cache keeps the scripts: its reads and writes go through its
// tracking connections (store_redis_cache.go).

// errNeedsScript: the plain read found what only the load script may act on.
var errNeedsScript = errors.New("session: the read needs the load script")

// readPlain loads k with one pipeline of plain reads (a MULTI on Cluster):
// the server's time, the hash and the user's generation. It returns errNeedsScript when the load script must
// run: the session is due a touch or dead, or Redis refused a command (the
// script then gives the exact answer).
func (s *RedisStore) readPlain(ctx context.Context, k Key, keys []string, p Policy) (Record, error) {
	var (
		now  *redis.TimeCmd
		hash *redis.MapStringStringCmd
		gen  *redis.StringCmd
	)
	// One connection takes a plain pipeline whole; a cluster client splits
	// one by command under ReadOnly or RouteRandomly, sending the reads to
	// replicas, and takes a MULTI whole to the primary. The reads need not
	// be atomic: the generation only grows, so reading it after the hash
	// can only make a live session look revoked, and the script then
	// decides.
	pipelined := s.c.Pipelined
	if s.cluster != nil {
		pipelined = s.c.TxPipelined
	}
	_, err := pipelined(ctx, func(pipe redis.Pipeliner) error {
		// A write that never applies (the key's TTL is always later than
		// now): a replica refuses it (READONLY), and the read with it, so
		// a session is never read from a replica that may not have seen
		// its logout yet.
		pipe.Do(ctx, "PEXPIRE", keys[0], 0, "GT")
		now = pipe.Time(ctx)
		hash = pipe.HGetAll(ctx, keys[0])
		if len(keys) > 1 {
			gen = pipe.Get(ctx, keys[1])
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		s.noteFailure(err)
		if isReply(err) {
			return Record{}, errNeedsScript
		}
		return Record{}, fmt.Errorf("session: redis load: %w", err)
	}
	h := hash.Val()
	code := liveness(field(h, fieldUser), field(h, fieldExpire), field(h, fieldGen), gen, k, now.Val())
	if code <= 0 {
		if code == 0 || code == -3 {
			return Record{}, codeErr(code) // nothing to delete
		}
		return Record{}, errNeedsScript
	}
	rec, err := parseHashMap(k, h)
	if err != nil {
		return Record{}, err
	}
	if now.Val().Sub(rec.LastSeen) >= touchEvery(p, h[fieldIdle]) {
		return Record{}, errNeedsScript
	}
	return rec, nil
}

// touchEvery is how old a session's last-seen time may grow before a read
// touches it: TouchInterval, or half the idle timeout it slides by if that
// is shorter, so that a session in use never expires between touches.
func touchEvery(p Policy, own string) time.Duration {
	idle := p.IdleTimeout
	if ms, err := strconv.ParseInt(own, 10, 64); err == nil && ms > 0 {
		idle = time.Duration(ms) * time.Millisecond
	}
	return min(p.TouchInterval, idle/2)
}

// updatePlain applies c to k in one MULTI that also reads what the update
// script checks first. If the session was not live, the writes are
// deleted again (scriptSettle) and the reason returned.
func (s *RedisStore) updatePlain(ctx context.Context, k Key, keys []string, c Change, ttl time.Duration) error {
	var (
		now  *redis.TimeCmd
		meta *redis.SliceCmd
		gen  *redis.StringCmd
	)
	_, err := s.c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		now = pipe.Time(ctx)
		meta = pipe.HMGet(ctx, keys[0], fieldUser, fieldExpire, fieldGen)
		if len(keys) > 1 {
			gen = pipe.Get(ctx, keys[1])
		}
		if len(c.Set) > 0 {
			args := make([]any, 0, 2*len(c.Set))
			for name, v := range c.Set {
				args = append(args, valuePrefix+name, v)
			}
			pipe.HSet(ctx, keys[0], args...)
		}
		if len(c.Delete) > 0 {
			names := make([]string, len(c.Delete))
			for i, name := range c.Delete {
				names[i] = valuePrefix + name
			}
			pipe.HDel(ctx, keys[0], names...)
		}
		pipe.Do(ctx, "PEXPIRE", keys[0], millis(ttl), "NX") // only a hash the writes made has none
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		s.noteFailure(err)
		return fmt.Errorf("session: redis update: %w", refusal(err))
	}
	m := meta.Val()
	code := liveness(m[0], m[1], m[2], gen, k, now.Val())
	if code > 0 {
		return nil
	}
	// -3 (another user's hash) cannot happen but by editing Redis by hand:
	// every key names its user. The writes landed; settle leaves that hash.
	if _, err := s.run(ctx, scriptSettle, keys, k.Hash, k.UserID).Result(); err != nil {
		return fmt.Errorf("session: redis update: cleaning up after a session that was not live: %w", err)
	}
	return codeErr(code)
}

// liveness is the prelude's remaining for a hash read by plain commands
// (nil: the field is absent): 1 for a live session, else its code (0
// missing, -1 expired, -2 revoked, -3 another user's, -4 corrupt).
func liveness(user, expires, g any, gen *redis.StringCmd, k Key, now time.Time) int64 {
	if user == nil && expires == nil {
		return 0
	}
	if str(user) != k.UserID || user == nil {
		return -3
	}
	x, err := strconv.ParseInt(str(expires), 10, 64)
	if err != nil {
		return -4
	}
	if gen != nil {
		if g == nil {
			return -4
		}
		if cur, err := gen.Result(); err != nil || cur != str(g) {
			return -2
		}
	}
	if x <= now.UnixMilli() {
		return -1
	}
	return 1
}

// field returns h's value of name, or nil if h has no such field.
func field(h map[string]string, name string) any {
	if v, ok := h[name]; ok {
		return v
	}
	return nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func isReply(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply) && !errors.Is(err, redis.Nil)
}

// incrPlain is Incr in one MULTI that also reads what the incr script
// checks first, and the value before it (HINCRBY's own reply is exact,
// where a script's passes through a double).
func (s *RedisStore) incrPlain(ctx context.Context, k Key, keys []string, name string, delta int64, ttl time.Duration) (int64, error) {
	var (
		now  *redis.TimeCmd
		meta *redis.SliceCmd
		gen  *redis.StringCmd
		incr *redis.IntCmd
	)
	field := valuePrefix + name
	_, err := s.c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		now = pipe.Time(ctx)
		meta = pipe.HMGet(ctx, keys[0], fieldUser, fieldExpire, fieldGen, field)
		if len(keys) > 1 {
			gen = pipe.Get(ctx, keys[1])
		}
		incr = pipe.HIncrBy(ctx, keys[0], field, delta)
		pipe.Do(ctx, "PEXPIRE", keys[0], millis(ttl), "NX") // only a hash the write made has none
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && (!isReply(err) || meta.Err() != nil) {
		s.noteFailure(err)
		return 0, fmt.Errorf("session: redis incr: %w", refusal(err))
	}
	m := meta.Val()
	if code := liveness(m[0], m[1], m[2], gen, k, now.Val()); code <= 0 {
		if _, err := s.run(ctx, scriptSettle, keys, k.Hash, k.UserID).Result(); err != nil {
			return 0, fmt.Errorf("session: redis incr: cleaning up after a session that was not live: %w", err)
		}
		return 0, codeErr(code)
	}
	if err := incr.Err(); err != nil {
		if msg := err.Error(); strings.Contains(msg, "not an integer") || strings.Contains(msg, "overflow") {
			return 0, ErrNotInteger // Redis left the value as it was
		}
		return 0, fmt.Errorf("session: redis incr: %w", refusal(err))
	}
	// Redis refuses what MemoryStore refuses; a server laxer than Redis
	// (miniredis takes "+5" and wraps past the int64 range) has applied
	// it, and the value it had is put back.
	before, absent := m[3].(string)
	absent = !absent
	if n, ok := parseCounter(before); !absent && !ok || ok && addOverflows(n, delta) {
		if err := s.c.HSet(ctx, keys[0], field, before).Err(); err != nil {
			return 0, fmt.Errorf("session: redis incr: putting back a refused increment: %w", err)
		}
		return 0, ErrNotInteger
	}
	return incr.Val(), nil
}

// addOverflows reports whether a + b leaves the int64 range.
func addOverflows(a, b int64) bool {
	return b > 0 && a > math.MaxInt64-b || b < 0 && a < math.MinInt64-b
}
