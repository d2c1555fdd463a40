package pgstore

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
)

// CachedOptions configures NewCachedStore. The zero value means the defaults.
type CachedOptions struct {
	// Prefix starts every Redis key the cache writes. Default "pgsession:".
	// It may not contain '{' or '}'.
	Prefix string
	// Timeout bounds each Redis call; past it the call counts as failed
	// and the operation is served by PostgreSQL alone. Default 100ms. It
	// holds whatever the client's options; set ContextTimeoutEnabled on the
	// client too, so that an abandoned call also frees its connection then.
	Timeout time.Duration
	// RetryAfter is how long the store leaves Redis alone after a failed
	// call, serving everything from PostgreSQL, before it tries again, so
	// that a Redis that is down or black-holed costs requests nothing.
	// Default 1s.
	RetryAfter time.Duration
	// MaxPending bounds how many cache invalidations that could not reach
	// Redis the store keeps to retry. Default 100000.
	MaxPending int
}

// Defaults of CachedOptions.
const (
	DefaultCachedPrefix  = "pgsession:"
	DefaultCacheTimeout  = 100 * time.Millisecond
	DefaultCacheRetry    = time.Second
	DefaultCachedPending = 100_000
)

// CachedStore is a session.Store with PostgreSQL (a *Store) as the source of
// truth and Redis as a read cache in front of it. It is safe for concurrent
// use. The zero value is not usable: use NewCachedStore.
//
//   - A Load of a cached session is one Redis round trip. A miss reads
//     PostgreSQL and fills Redis. Last-seen times and the idle expiry reach
//     PostgreSQL at most once per Policy.TouchInterval: a Load that finds
//     the cached last-seen time that old reads PostgreSQL again (which
//     records the client and slides the idle expiry there, and checks the
//     session still exists) and refills. The cache keeps the last-seen time
//     as an age, so the two servers' clocks need not agree.
//   - Every write (Create, Update, Incr, Rotate, Delete, Revoke, RevokeAll)
//     goes to PostgreSQL first and then invalidates or refills Redis, so
//     logins, logouts and revocations survive a Redis restart, and a Redis
//     that restarts empty signs nobody out.
//   - Idle expiry is PostgreSQL's: the cached copy lives no longer than the
//     row's idle end as of its last touch, so a session's idle timeout runs
//     from its last touch, as precise as TouchInterval, like LastSeen.
//   - Fills cannot bring back a session that ended or overwrite a newer
//     write (the cache-aside race): every PostgreSQL write draws a version
//     from one sequence, every invalidation leaves a floor version in Redis
//     (for a deleted session, a version drawn after its delete), and the
//     fill script writes only a version at or above the floor and above
//     the copy it replaces.
//   - When a Redis call fails or exceeds Timeout, the operation is served by
//     PostgreSQL alone, and so are reads for RetryAfter: revocations stay
//     global during a Redis outage. Writes still try to invalidate the
//     cached copy (within Timeout) even then. An invalidation that could not
//     reach Redis is retried in the background until it does (up to
//     MaxPending of them). Until it lands (when Redis kept its data but this
//     instance could not reach it, as in a partition or a pause, and until
//     the retry after Redis answers again, RetryAfter/4 at most), or if it
//     is lost (this process ended first), another instance may serve the
//     cached copy of the ended session: never once the copy is
//     TouchInterval old, when the Load checks PostgreSQL. A Redis that
//     restarts empty holds no copy to serve.
//
// Redis keys, with P the prefix and h the session's token hash:
//
//	P{h}:d  the cached copy: version, record, its last-seen time on Redis's clock
//	P{h}:f  the floor: the lowest version a fill may write
type CachedStore struct {
	pg   *Store
	rdb  redis.UniversalClient
	opts CachedOptions

	// downUntil is when Redis may be tried again, in Unix nanoseconds.
	downUntil atomic.Int64

	pendingMu sync.Mutex
	pending   map[string]pendingFloor

	// beforeFill, if set, runs between the PostgreSQL read of a Load and its
	// Redis fill: tests put a revocation there.
	beforeFill func(session.Key)

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// pendingFloor is an invalidation waiting for Redis to come back.
type pendingFloor struct {
	version int64
	until   time.Time // when the floor no longer matters
}

var (
	//go:embed lua/cache_load.lua
	luaCacheLoad string
	//go:embed lua/cache_fill.lua
	luaCacheFill string
	//go:embed lua/cache_floor.lua
	luaCacheFloor string

	scriptCacheLoad  = redis.NewScript(luaCacheLoad)
	scriptCacheFill  = redis.NewScript(luaCacheFill)
	scriptCacheFloor = redis.NewScript(luaCacheFloor)
)

// errRedisResting: the store is leaving Redis alone after a failure.
var errRedisResting = errors.New("session: redis cache resting after a failure")

// NewCachedStore returns a CachedStore on pg and rdb, and starts the
// goroutine that retries invalidations; Close stops it (and not pg).
func NewCachedStore(pg *Store, rdb redis.UniversalClient, opts CachedOptions) (*CachedStore, error) {
	if pg == nil || rdb == nil {
		return nil, fmt.Errorf("%w: pgstore: NewCachedStore needs a Store and a Redis client", session.ErrInvalidOptions)
	}
	if opts.Timeout < 0 || opts.RetryAfter < 0 || opts.MaxPending < 0 {
		return nil, fmt.Errorf("%w: pgstore: negative CachedOptions", session.ErrInvalidOptions)
	}
	for _, c := range opts.Prefix {
		if c == '{' || c == '}' {
			return nil, fmt.Errorf("%w: pgstore: Prefix %q contains a brace", session.ErrInvalidOptions, opts.Prefix)
		}
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultCachedPrefix
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultCacheTimeout
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = DefaultCacheRetry
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = DefaultCachedPending
	}
	c := &CachedStore{pg: pg, rdb: rdb, opts: opts, pending: map[string]pendingFloor{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go c.retryPending()
	return c, nil
}

// Close stops the retry goroutine. It closes neither the Store nor the
// Redis client.
func (c *CachedStore) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.done
	})
	return nil
}

func (c *CachedStore) keys(hash string) []string {
	p := c.opts.Prefix + "{" + hash + "}:"
	return []string{p + "d", p + "f"}
}

// redis runs one script with the store's timeout, unless Redis is resting
// and the call may be skipped (reads and fills may; invalidations may not,
// as another instance may be filling meanwhile); a failure (other than
// redis.Nil) puts Redis to rest for RetryAfter.
func (c *CachedStore) redis(ctx context.Context, s *redis.Script, keys []string, args ...any) (any, error) {
	if s != scriptCacheFloor && time.Now().UnixNano() < c.downUntil.Load() {
		return nil, errRedisResting
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	// go-redis honours a context's deadline on the socket only with
	// ContextTimeoutEnabled; without it a stalled Redis holds a call for
	// ReadTimeout (3s by default). So the call runs aside and is abandoned
	// at the deadline: every script is safe to land late (fills and floors
	// are ordered by version, and a late load is ignored).
	type reply struct {
		res any
		err error
	}
	done := make(chan reply, 1)
	go func() {
		res, err := s.Run(ctx, c.rdb, keys, args...).Result()
		done <- reply{res, err}
	}()
	var res any
	var err error
	select {
	case r := <-done:
		res, err = r.res, r.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		c.downUntil.Store(time.Now().Add(c.opts.RetryAfter).UnixNano())
		return nil, err
	}
	return res, nil
}

// cachedRecord is a Record as the cache stores it: byte strings as such
// (base64 in JSON), so no user ID or value is changed on the way.
type cachedRecord struct {
	User       []byte   `json:"u"`
	ID         []byte   `json:"id"`
	Created    int64    `json:"c"` // Unix microseconds
	LastSeen   int64    `json:"s"`
	Expires    int64    `json:"x"`
	UserAgent  []byte   `json:"ua"`
	IP         []byte   `json:"ip"`
	Remembered bool     `json:"r,omitempty"`
	Names      [][]byte `json:"n"`
	Values     [][]byte `json:"v"`
}

func encodeRecord(r session.Record) (string, error) {
	names, vals := columns(r.Values)
	b, err := json.Marshal(cachedRecord{
		User: bs(r.UserID), ID: bs(r.ID),
		Created: r.Created.UnixMicro(), LastSeen: r.LastSeen.UnixMicro(), Expires: r.Expires.UnixMicro(),
		UserAgent: bs(r.UserAgent), IP: bs(r.IP), Remembered: r.Remembered,
		Names: names, Values: vals,
	})
	return string(b), err
}

func decodeRecord(s string) (session.Record, error) {
	var cr cachedRecord
	if err := json.Unmarshal([]byte(s), &cr); err != nil || len(cr.Names) != len(cr.Values) {
		return session.Record{}, fmt.Errorf("%w: cached record is corrupt", session.ErrInconsistent)
	}
	r := session.Record{
		Info: session.Info{
			ID: string(cr.ID), Created: time.UnixMicro(cr.Created), LastSeen: time.UnixMicro(cr.LastSeen),
			Expires: time.UnixMicro(cr.Expires), UserAgent: string(cr.UserAgent), IP: string(cr.IP),
			Remembered: cr.Remembered,
		},
		UserID: string(cr.User),
		Values: make(map[string]string, len(cr.Names)),
	}
	for i, n := range cr.Names {
		r.Values[string(n)] = string(cr.Values[i])
	}
	return r, nil
}

// fill caches st under k unless a newer copy or a higher floor is there.
// Best effort: a failure only means the next Load reads PostgreSQL.
func (c *CachedStore) fill(ctx context.Context, k session.Key, st stored) {
	blob, err := encodeRecord(st.rec)
	if err != nil {
		return
	}
	_, _ = c.redis(ctx, scriptCacheFill, c.keys(k.Hash), st.version, blob, max(1, st.ttl.Milliseconds()), st.seenAge.Milliseconds())
}

// floor raises hash's floor to version (for at least ttl) and drops an
// older cached copy. If Redis cannot be told, it is queued for retry.
func (c *CachedStore) floor(ctx context.Context, hash string, version int64, ttl time.Duration) {
	ttl = max(ttl, time.Minute) // outlives any fill still in flight
	if _, err := c.redis(ctx, scriptCacheFloor, c.keys(hash), version, ttl.Milliseconds()); err != nil {
		c.queue(hash, version, ttl)
	}
}

func (c *CachedStore) floorEnded(ctx context.Context, gone []ended) {
	for _, e := range gone {
		c.floor(ctx, e.hash, e.version, time.Until(e.expires)+time.Minute)
	}
}

func (c *CachedStore) queue(hash string, version int64, ttl time.Duration) {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	if p, ok := c.pending[hash]; ok && p.version >= version {
		return
	}
	if len(c.pending) >= c.opts.MaxPending {
		return // the TouchInterval check still bounds how long a stale copy lives
	}
	c.pending[hash] = pendingFloor{version: version, until: time.Now().Add(ttl)}
}

// PendingInvalidations returns how many invalidations wait for Redis.
func (c *CachedStore) PendingInvalidations() int {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	return len(c.pending)
}

func (c *CachedStore) retryPending() {
	defer close(c.done)
	t := time.NewTicker(c.opts.RetryAfter / 4)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.flushPending()
		}
	}
}

// flushPending sends queued invalidations while Redis takes them.
func (c *CachedStore) flushPending() {
	c.pendingMu.Lock()
	batch := make(map[string]pendingFloor, len(c.pending))
	for h, p := range c.pending {
		batch[h] = p
	}
	c.pendingMu.Unlock()
	now := time.Now()
	for h, p := range batch {
		if p.until.After(now) {
			ttl := p.until.Sub(now)
			if _, err := c.redis(context.Background(), scriptCacheFloor, c.keys(h), p.version, ttl.Milliseconds()); err != nil {
				return
			}
		}
		c.pendingMu.Lock()
		if q, ok := c.pending[h]; ok && q.version == p.version {
			delete(c.pending, h)
		}
		c.pendingMu.Unlock()
	}
}

// Load implements session.Store: one Redis round trip for a cached session
// whose copy is younger than p.TouchInterval; otherwise PostgreSQL, then a
// fill.
func (c *CachedStore) Load(ctx context.Context, k session.Key, cl session.Client, p session.Policy) (session.Record, error) {
	if err := checkKey(k); err != nil {
		return session.Record{}, err
	}
	var seen int64 // the version of a stale cached copy
	res, err := c.redis(ctx, scriptCacheLoad, c.keys(k.Hash)[:1], p.TouchInterval.Milliseconds())
	if err == nil {
		if hit, ok := res.([]any); ok && len(hit) == 3 {
			v, _ := hit[0].(string)
			blob, _ := hit[1].(string)
			stale, _ := hit[2].(int64)
			rec, derr := decodeRecord(blob)
			switch {
			case derr != nil:
			case rec.UserID != k.UserID:
				return session.Record{}, fmt.Errorf("%w: the cached session is another user's", session.ErrInconsistent)
			case stale == 0:
				return rec, nil
			}
			seen, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	st, err := c.pg.load(ctx, k, cl, p)
	if c.beforeFill != nil {
		c.beforeFill(k)
	}
	if errors.Is(err, session.ErrNotFound) {
		if seen > 0 {
			c.floor(ctx, k.Hash, seen+1, p.Lifetime)
		}
		return session.Record{}, err
	}
	if err != nil {
		return session.Record{}, err
	}
	c.fill(ctx, k, st)
	return st.rec, nil
}

// Create implements session.Store.
func (c *CachedStore) Create(ctx context.Context, k session.Key, rec session.Record, p session.Policy) (session.Record, error) {
	st, capped, err := c.pg.create(ctx, k, rec, p)
	if err != nil {
		return session.Record{}, err
	}
	c.floorEnded(ctx, capped)
	c.fill(ctx, k, st)
	return st.rec, nil
}

// Update implements session.Store.
func (c *CachedStore) Update(ctx context.Context, k session.Key, ch session.Change, p session.Policy) error {
	v, err := c.pg.update(ctx, k, ch, p)
	if err != nil {
		return err
	}
	c.floor(ctx, k.Hash, v, p.Lifetime)
	return nil
}

// Incr implements session.Store.
func (c *CachedStore) Incr(ctx context.Context, k session.Key, name string, delta int64, p session.Policy) (int64, error) {
	n, v, err := c.pg.incr(ctx, k, name, delta, p)
	if err != nil {
		return 0, err
	}
	c.floor(ctx, k.Hash, v, p.Lifetime)
	return n, nil
}

// Rotate implements session.Store: PostgreSQL's one-transaction rotation,
// then the old session's copy is dropped and the new one cached.
func (c *CachedStore) Rotate(ctx context.Context, r session.Rotation, p session.Policy) (session.Record, error) {
	st, gone, err := c.pg.rotate(ctx, r, p)
	if err != nil {
		return session.Record{}, err
	}
	c.floorEnded(ctx, gone)
	c.fill(ctx, r.To, st)
	return st.rec, nil
}

// Delete implements session.Store.
func (c *CachedStore) Delete(ctx context.Context, k session.Key) error {
	gone, err := c.pg.delete(ctx, k)
	if err != nil {
		return err
	}
	c.floorEnded(ctx, gone)
	return nil
}

// List implements session.Store, from PostgreSQL.
func (c *CachedStore) List(ctx context.Context, userID string) ([]session.Info, error) {
	return c.pg.List(ctx, userID)
}

// Revoke implements session.Store.
func (c *CachedStore) Revoke(ctx context.Context, userID, id string) error {
	live, all, err := c.pg.revokeAll(ctx, userID, sqlRevoke, map[string]any{"id": bs(id)})
	if err != nil {
		return err
	}
	c.floorEnded(ctx, all)
	if len(live) == 0 {
		return session.ErrNotFound
	}
	return nil
}

// RevokeAll implements session.Store.
func (c *CachedStore) RevokeAll(ctx context.Context, userID string, keep session.Key) (int, error) {
	keepHash := ""
	if keep.UserID == userID {
		keepHash = keep.Hash
	}
	live, all, err := c.pg.revokeAll(ctx, userID, sqlRevokeAll, map[string]any{"keep": keepHash})
	if err != nil {
		return 0, err
	}
	c.floorEnded(ctx, all)
	return len(live), nil
}
