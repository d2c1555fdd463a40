package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The everyday calls, a read and a write of a live session, go without a
// script: one pipeline or MULTI of plain commands, checked here, costs
// Redis about half the CPU of a script doing the same (README,
// Performance). A script runs only where Redis must change what it holds
// because of what was read:
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
// With the local cache on, reads go through the cache and, on a miss, the
// load script on a tracking connection; writes send the same plain MULTI
// on a tracking connection, so the entry stays cached (store_redis_cache.go).

// errNeedsScript: the plain read found what only the load script may act on.
var errNeedsScript = errors.New("session: the read needs the load script")

// readPlain loads k with one pipeline of plain reads (a MULTI on
// Cluster): the server's time, the hash and the user's generation. It
// returns errNeedsScript when the load script must run: the session is due
// a touch or dead, or Redis refused a command (the script then gives the
// exact answer).
func (s *RedisStore) readPlain(ctx context.Context, k Key, keys []string, p Policy) (Record, error) {
	// One connection takes a plain pipeline whole; a cluster client splits
	// one by command under ReadOnly or RouteRandomly, sending the reads to
	// replicas, and takes a MULTI whole to the primary. The reads need not
	// be atomic: the generation only grows, so reading it after the hash
	// can only make a live session look revoked, and the script then
	// decides. (A pipeline, not Pipelined with a closure: the closure and
	// the variables it shares were four allocations a read.)
	var pipe redis.Pipeliner
	if s.cluster != nil {
		pipe = s.c.TxPipeline()
	} else {
		pipe = s.c.Pipeline()
	}
	// A write that never applies (the key's TTL is always later than now):
	// a replica refuses it (READONLY), and the read with it, so a session
	// is never read from a replica that may not have seen its logout yet.
	pipe.Do(ctx, "PEXPIRE", keys[0], 0, "GT")
	now := pipe.Time(ctx)
	hash := pipe.HGetAll(ctx, keys[0])
	var gen *redis.StringCmd
	if len(keys) > 1 {
		gen = pipe.Get(ctx, keys[1])
	}
	_, err := pipe.Exec(ctx)
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
// is shorter, so that a session in use never expires between touches. The
// load script computes the same.
func touchEvery(p Policy, own string) time.Duration {
	idle := p.IdleTimeout
	if own != "" { // a remembered session's own; parsing "" would allocate its error
		if ms, err := strconv.ParseInt(own, 10, 64); err == nil && ms > 0 {
			idle = time.Duration(ms) * time.Millisecond
		}
	}
	return min(p.TouchInterval, idle/2)
}

// plainWrite is an Update or an Incr as plain commands, queued in one
// MULTI with the reads that say whether the session is live: its user,
// absolute end and generation. No TIME: a session's key
// never outlives its absolute end (every TTL set on it is capped by it),
// so a write that finds the key with its metadata finds it within its
// lifetime.
type plainWrite struct {
	k    Key
	keys []string
	ttl  time.Duration
	// an Update's change, or an Incr's field and delta
	change      Change
	incr        bool
	field       string
	delta       int64
	meta        *redis.SliceCmd
	gen         *redis.StringCmd
	incremented *redis.IntCmd
}

func plainUpdate(k Key, keys []string, c Change, ttl time.Duration) *plainWrite {
	return &plainWrite{k: k, keys: keys, ttl: ttl, change: c}
}

func plainIncr(k Key, keys []string, name string, delta int64, ttl time.Duration) *plainWrite {
	return &plainWrite{k: k, keys: keys, ttl: ttl, incr: true, field: valuePrefix + name, delta: delta}
}

func (w *plainWrite) queue(ctx context.Context, pipe redis.Pipeliner) {
	names := []string{fieldUser, fieldExpire, fieldGen}
	if w.incr {
		names = append(names, w.field) // the value before, for lax servers
	}
	w.meta = pipe.HMGet(ctx, w.keys[0], names...)
	if len(w.keys) > 1 {
		w.gen = pipe.Get(ctx, w.keys[1])
	}
	if w.incr {
		w.incremented = pipe.HIncrBy(ctx, w.keys[0], w.field, w.delta)
	}
	if len(w.change.Set) > 0 {
		args := make([]any, 0, 2*len(w.change.Set))
		for name, v := range w.change.Set {
			args = append(args, valuePrefix+name, v)
		}
		pipe.HSet(ctx, w.keys[0], args...)
	}
	if len(w.change.Delete) > 0 {
		names := make([]string, len(w.change.Delete))
		for i, name := range w.change.Delete {
			names[i] = valuePrefix + name
		}
		pipe.HDel(ctx, w.keys[0], names...)
	}
	pipe.Do(ctx, "PEXPIRE", w.keys[0], millis(w.ttl), "NX") // only a hash the writes made has none
}

// errLaxIncrement: a server laxer than Redis applied an increment Redis
// refuses (miniredis takes "+5" and wraps past the int64 range).
var errLaxIncrement = errors.New("session: the server incremented a value Redis would not")

// reply reads the replies as the update or incr script's would be: 1 (an
// update) or {value} (an incr) for a live session, else a code.
func (w *plainWrite) reply() (any, error) {
	if err := w.meta.Err(); err != nil {
		return nil, err
	}
	if w.gen != nil {
		if err := w.gen.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
	}
	m := w.meta.Val()
	if code := liveness(m[0], m[1], m[2], w.gen, w.k, time.Time{}); code <= 0 {
		return code, nil
	}
	if !w.incr {
		return int64(1), nil
	}
	if err := w.incremented.Err(); err != nil {
		return nil, err // Redis left the value as it was
	}
	before, present := m[3].(string)
	if _, err := addCounter(before, present, w.delta); err != nil {
		return nil, errLaxIncrement
	}
	return []any{strconv.FormatInt(w.incremented.Val(), 10)}, nil
}

// finish undoes what the writes must not leave: on a session that was not
// live, the hash they wrote to (scriptSettle); after a lax increment, the
// value as it was. It returns the call's error.
func (w *plainWrite) finish(ctx context.Context, s *RedisStore, res any, err error) error {
	op := "update"
	if w.incr {
		op = "incr"
	}
	switch {
	case errors.Is(err, errLaxIncrement):
		before, _ := w.meta.Val()[3].(string)
		if err := s.c.HSet(ctx, w.keys[0], w.field, before).Err(); err != nil {
			return fmt.Errorf("session: redis incr: putting back a refused increment: %w", err)
		}
		s.cache.wrote(w.k)
		return ErrNotInteger
	case err != nil:
		if msg := err.Error(); w.incr && (strings.Contains(msg, "not an integer") || strings.Contains(msg, "overflow")) {
			return ErrNotInteger
		}
		return fmt.Errorf("session: redis %s: %w", op, refusal(err))
	}
	code, dead := res.(int64)
	if !dead || code > 0 {
		return nil
	}
	// -3 (another user's hash) cannot happen but by editing Redis by hand:
	// every key names its user. The writes landed; settle leaves that hash.
	if _, err := s.run(ctx, scriptSettle, w.keys, w.k.Hash, w.k.UserID).Result(); err != nil {
		return fmt.Errorf("session: redis %s: cleaning up after a session that was not live: %w", op, err)
	}
	s.cache.wrote(w.k)
	return codeErr(code)
}

// runPlain sends w, through the local cache's tracking connection if the
// store has a cache, and returns the call's error and its reply.
func (s *RedisStore) runPlain(ctx context.Context, w *plainWrite, p Policy, next cacheNext) (any, error) {
	var res any
	var err error
	if s.cache != nil {
		res, err = s.cache.runPlain(ctx, w, p, next)
	} else {
		res, err = s.sendPlain(ctx, w)
	}
	if ferr := w.finish(ctx, s, res, err); ferr != nil {
		return nil, ferr
	}
	return res, nil
}

// sendPlain sends w's MULTI through the client.
func (s *RedisStore) sendPlain(ctx context.Context, w *plainWrite) (any, error) {
	_, err := s.c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		w.queue(ctx, pipe)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !isReply(err) {
		s.noteFailure(err)
		return nil, err
	}
	return w.reply()
}

// liveness is the prelude's remaining for a hash read by plain commands
// (nil: the field is absent): 1 for a live session, else its code (0
// missing, -1 expired, -2 revoked, -3 another user's, -4 corrupt). A zero
// now skips the absolute end (the key's TTL keeps it).
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
	if !now.IsZero() && x <= now.UnixMilli() {
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
