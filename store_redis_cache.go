package session

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// LocalCacheOptions configures RedisStore's local read cache
// (RedisOptions.LocalCache). The zero value turns the cache off.
//
// With the cache on, a Load of a session this process read or wrote a
// moment ago costs no round trip to Redis. Redis itself says when a cached
// session stops being current: the store keeps CLIENT TRACKING (Redis 6 or
// later, NOLOOP) on connections of its own (4), redirected to a Pub/Sub
// connection it watches, the mechanism FallbackStore's local copies use;
// so it holds 5 connections to the primary (to each primary, on Cluster)
// besides the client's pool. An entry is served only while all of this
// holds:
//   - it was read under the current invalidation epoch: losing any of
//     these connections (noticed at once when a call on it fails or the
//     subscriber's read fails, otherwise within about two heartbeats, 2s),
//     a FLUSHALL or a Sentinel failover (which kills the old primary's
//     clients) ends the epoch, and nothing read under an earlier one is
//     served again;
//   - Redis has reported no change to the session's hash or to its user's
//     generation since the entry was read: any write by any instance
//     (Update, Incr, a touch, Logout, Revoke, RevokeAll, LogoutOthers, an
//     expiry, an eviction) drops it as soon as the report arrives;
//   - it is younger than its window: the read found the session's last-seen
//     time age old and its key's TTL ttl, and the entry is served until
//     TouchInterval - age or ttl has passed, whichever is first, counted
//     from before the read was sent.
//
// So the sliding idle expiry stays correct to within TouchInterval: a
// cached read never outlives the key it stands for (ttl bounds it), and
// the first read after the window goes to Redis, which slides the TTL and
// writes the last-seen time, as a read without the cache would. Reads
// served from the cache do not slide the TTL, so a session expires in Redis
// IdleTimeout after the last read that reached Redis, which is at most
// TouchInterval before the last read its user made: it may end up to
// TouchInterval earlier than IdleTimeout after its last use, never later.
// The last-seen time on the devices list is as precise as TouchInterval,
// as without the cache.
//
// A write through this store (Update, Incr, Rotate, Delete, Revoke,
// RevokeAll, a Create that caps the user's sessions) updates or drops the
// entries it affects before it returns, so this process reads its own
// writes.
//
// The cache works on a single node, Sentinel (*redis.Client) and Cluster
// (*redis.ClusterClient); NewRedisStore refuses it on a Ring with
// ErrInvalidOptions. A cluster primary tracks only its own keys, so on
// Cluster the store keeps those 5 connections per primary, and an entry is
// served only while the client still maps its slot to the primary it was
// read from; any change of the slot map (seen by a CLUSTER SHARDS check
// every second, or at once by a MOVED or ASK reply) drops everything, as
// the keys' new primary knows nothing of what was cached.
type LocalCacheOptions struct {
	// Size is how many sessions the cache keeps, least recently used out
	// first. Default 0: no cache.
	Size int
}

// cacheTrackConns is how many tracking connections the cache keeps (per
// primary). Each session's calls go through one of them, always the same
// (invalidator.connFor), and wait for it while it is busy.
const cacheTrackConns = 4

// redisCache is RedisStore's local read cache (see LocalCacheOptions). It
// is safe for concurrent use.
type redisCache struct {
	s       *RedisStore
	single  *cacheNode       // on a *redis.Client
	cluster *clusterTracking // on a *redis.ClusterClient
	max     int
	// topo counts the changes of the cluster's slot map seen so far: an
	// entry read under an earlier count is not served (always 0 off
	// Cluster).
	topo atomic.Uint64

	mu     sync.Mutex
	m      map[Key]*list.Element
	byUser map[string]map[Key]struct{}
	lru    list.List // of *cacheEntry, most recent first
	// writes counts the writes of this store that ran outside the tracking
	// connection; an entry read while one was on its way is not kept, as
	// the report of its change may come after the entry.
	writes uint64

	reportHook atomic.Pointer[func(names []string)] // tests: after a report is applied

	confirmMu sync.Mutex
	toConfirm map[Key]Policy // loads that could not go through the tracking connection
	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// cacheNode is one primary the cache tracks keys on.
type cacheNode struct {
	addr string
	inv  *invalidator
}

type cacheEntry struct {
	key   Key
	name  string // the session hash's key, for its cluster slot
	rec   Record
	node  *cacheNode // the primary it was read from
	epoch uint64     // node's invalidation epoch it was read under
	topo  uint64     // the slot-map count it was read under
	until time.Time  // served while now is before it
	// touchBy is when, by this process's clock, the session's last-seen
	// time turns TouchInterval old (until is no later): a write that
	// slides the TTL but writes no last-seen time keeps it.
	touchBy time.Time
}

// newRedisCache starts a cache on c, a *redis.Client or a
// *redis.ClusterClient (errCacheNeedsClient otherwise).
func newRedisCache(s *RedisStore, c redis.UniversalClient, size int) (*redisCache, error) {
	rc := &redisCache{s: s, max: size, m: map[Key]*list.Element{}, byUser: map[string]map[Key]struct{}{},
		toConfirm: map[Key]Policy{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	switch c := c.(type) {
	case *redis.Client:
		rc.single = rc.newNode(*c.Options())
	case *redis.ClusterClient:
		rc.cluster = newClusterTracking(rc, c)
	default:
		return nil, errCacheNeedsClient(c)
	}
	go rc.confirmLoop()
	return rc, nil
}

// newNode starts tracking on the node that opts connect to.
func (c *redisCache) newNode(opts redis.Options) *cacheNode {
	n := &cacheNode{addr: opts.Addr}
	n.inv = newInvalidator(opts, cacheTrackConns, func(names []string) { c.changed(n, names) })
	return n
}

// nodeFor returns the node whose tracking covers the key name now, or
// errNotTracked.
func (c *redisCache) nodeFor(ctx context.Context, name string) (*cacheNode, error) {
	if c.cluster != nil {
		return c.cluster.nodeFor(ctx, name)
	}
	return c.single, nil
}

// errNotTracked: no tracking connection could be found for a key; nothing
// was sent.
var errNotTracked = errors.New("session: no tracking for the key's node")

func (c *redisCache) Close() error {
	if c == nil {
		return nil
	}
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.done
	})
	if c.cluster != nil {
		return c.cluster.Close()
	}
	return c.single.inv.Close()
}

// confirm asks for k to be read into the cache in the background.
func (c *redisCache) confirm(k Key, p Policy) {
	c.confirmMu.Lock()
	if len(c.toConfirm) < c.max {
		c.toConfirm[k] = p
	}
	c.confirmMu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// confirmLoop reads the sessions confirm asked for into the cache, in
// batches of up to confirmBatch, each one barrier and one pipeline on the
// tracking connection (as FallbackStore confirms its copies).
func (c *redisCache) confirmLoop() {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		}
		for {
			c.confirmMu.Lock()
			batch := make(map[Key]Policy, min(len(c.toConfirm), confirmBatch))
			for k, p := range c.toConfirm {
				if len(batch) == confirmBatch {
					break
				}
				batch[k] = p
				delete(c.toConfirm, k)
			}
			c.confirmMu.Unlock()
			if len(batch) == 0 {
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = c.confirmBatch(ctx, batch) // not confirmed: read again on its next load
			cancel()
		}
	}
}

// confirmRead is one session's reads in a confirming batch.
type confirmRead struct {
	k     Key
	p     Policy
	names []string
	hash  *redis.MapStringStringCmd
	gen   *redis.StringCmd
	pttl  *redis.DurationCmd
}

func (c *redisCache) confirmBatch(ctx context.Context, batch map[Key]Policy) error {
	type target struct {
		node *cacheNode
		conn int
	}
	byConn := map[target][]confirmRead{}
	for k, p := range batch {
		names, err := c.s.keys(k)
		if err != nil {
			continue
		}
		if node, err := c.nodeFor(ctx, names[0]); err == nil {
			t := target{node, node.inv.connFor(names[0])}
			byConn[t] = append(byConn[t], confirmRead{k: k, p: p, names: names})
		}
	}
	var errs []error
	for t, reads := range byConn {
		errs = append(errs, c.confirmOn(ctx, t.node, t.conn, reads))
	}
	return errors.Join(errs...)
}

// confirmOn reads sessions that node holds into the cache, in one barrier
// and one pipeline on its tracking connection conn, the one their later
// calls go through.
func (c *redisCache) confirmOn(ctx context.Context, node *cacheNode, conn int, reads []confirmRead) error {
	c.mu.Lock()
	writes := c.writes
	c.mu.Unlock()
	topo := c.topo.Load()
	sent := time.Now()
	var now *redis.TimeCmd
	return node.inv.track(ctx, conn, func(pipe redis.Pipeliner) {
		for i := range reads {
			r := &reads[i]
			r.hash = pipe.HGetAll(ctx, r.names[0])
			if len(r.names) > 1 {
				r.gen = pipe.Get(ctx, r.names[1])
			}
			r.pttl = pipe.PTTL(ctx, r.names[0])
		}
		now = pipe.Time(ctx)
	}, func(_ []redis.Cmder, epoch uint64, reported func(string) bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.writes != writes || now.Err() != nil {
			return
		}
		for _, r := range reads {
			if c.redirectedLocked(r.hash.Err()) {
				return
			}
			if reported(r.names[0]) || (r.gen != nil && reported(r.names[1])) || r.pttl.Err() != nil {
				continue
			}
			rec, ok := liveRecord(r.k, r.hash, r.gen)
			if !ok {
				continue
			}
			touchBy := sent.Add(r.p.TouchInterval - now.Val().Sub(rec.LastSeen))
			if until := minTime(touchBy, sent.Add(r.pttl.Val())); sent.Before(until) {
				c.putLocked(&cacheEntry{key: r.k, name: r.names[0], rec: rec, node: node, epoch: epoch, topo: topo, until: until, touchBy: touchBy})
			}
		}
	})
}

// get returns k's entry if it may be served now.
func (c *redisCache) get(k Key, now time.Time) (Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return Record{}, false
	}
	ent := e.Value.(*cacheEntry)
	if !c.servableLocked(ent, now) {
		c.removeLocked(e)
		return Record{}, false
	}
	c.lru.MoveToFront(e)
	return copyRecord(ent.rec), true
}

// servableLocked reports whether ent may be served at now: its node's
// epoch and the slot map are those it was read under, and on Cluster the
// client still maps its slot to that node.
func (c *redisCache) servableLocked(ent *cacheEntry, now time.Time) bool {
	epoch := ent.node.inv.liveEpoch.Load()
	if epoch == 0 || ent.epoch != epoch || ent.topo != c.topo.Load() || !now.Before(ent.until) {
		return false
	}
	return c.cluster == nil || c.cluster.owns(ent.node, ent.name)
}

func (c *redisCache) putLocked(ent *cacheEntry) {
	if ent.topo != c.topo.Load() {
		return // read under a slot map since changed
	}
	if e, ok := c.m[ent.key]; ok {
		c.removeLocked(e)
	}
	c.m[ent.key] = c.lru.PushFront(ent)
	if ent.key.UserID != "" {
		u := c.byUser[ent.key.UserID]
		if u == nil {
			u = map[Key]struct{}{}
			c.byUser[ent.key.UserID] = u
		}
		u[ent.key] = struct{}{}
	}
	for c.lru.Len() > c.max {
		c.removeLocked(c.lru.Back())
	}
}

func (c *redisCache) removeLocked(e *list.Element) {
	ent := c.lru.Remove(e).(*cacheEntry)
	delete(c.m, ent.key)
	if u := c.byUser[ent.key.UserID]; u != nil {
		delete(u, ent.key)
		if len(u) == 0 {
			delete(c.byUser, ent.key.UserID)
		}
	}
}

// dropLocked drops k's entry, or with an empty k.Hash every entry of
// k.UserID's.
func (c *redisCache) dropLocked(k Key) {
	if k.Hash != "" {
		if e, ok := c.m[k]; ok {
			c.removeLocked(e)
		}
		return
	}
	for uk := range c.byUser[k.UserID] {
		c.removeLocked(c.m[uk])
	}
}

// changed hears node's invalidator: names are the keys Redis reported
// changed, nil for all of node's.
func (c *redisCache) changed(node *cacheNode, names []string) {
	c.mu.Lock()
	switch {
	case names == nil && c.cluster == nil:
		c.m = map[Key]*list.Element{}
		c.byUser = map[string]map[Key]struct{}{}
		c.lru.Init()
	case names == nil:
		for e := c.lru.Front(); e != nil; {
			next := e.Next()
			if e.Value.(*cacheEntry).node == node {
				c.removeLocked(e)
			}
			e = next
		}
	}
	for _, name := range names {
		if k, ok := c.s.keyOf(name); ok {
			c.dropLocked(k)
		}
	}
	c.mu.Unlock()
	if f := c.reportHook.Load(); f != nil {
		(*f)(names)
	}
}

// wrote drops what a write of this store outside the tracking connection
// may have changed (k, or with an empty k.Hash all of k.UserID's
// sessions), once the write is done. Safe on a nil cache.
func (c *redisCache) wrote(keys ...Key) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	for _, k := range keys {
		c.dropLocked(k)
	}
}

// dropAllLocked drops every entry and counts a change of the slot map, so
// that no read under the old one is kept either.
func (c *redisCache) dropAllLocked() {
	c.topo.Add(1)
	c.m = map[Key]*list.Element{}
	c.byUser = map[string]map[Key]struct{}{}
	c.lru.Init()
}

// redirectedLocked reports whether err is a cluster node's refusal to
// serve a slot (MOVED, ASK, TRYAGAIN, CLUSTERDOWN): the command did not
// run, and the slot map has changed, so everything is dropped and the
// client reloads its map.
func (c *redisCache) redirectedLocked(err error) bool {
	if c.cluster == nil || err == nil {
		return false
	}
	for _, prefix := range []string{"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"} {
		if redis.HasErrorPrefix(err, prefix) {
			c.dropAllLocked()
			c.cluster.recheck()
			return true
		}
	}
	return false
}

func (c *redisCache) redirected(err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.redirectedLocked(err)
}

// cacheNext computes a session's record after a call from its reply res
// (shaped as the script's would be) and base, the entry the cache held
// before it (nil if none): false if it cannot (the session ended, or a
// write without a base).
type cacheNext func(base *Record, res any) (Record, bool)

// loadedNext reads the load script's reply, the session as it left it.
func loadedNext(k Key) cacheNext {
	return func(_ *Record, res any) (Record, bool) {
		rec, err := parseHash(k, res)
		return rec, err == nil
	}
}

// changedNext applies an update's change to the entry the cache held.
func changedNext(c Change) cacheNext {
	return func(base *Record, res any) (Record, bool) {
		if n, _ := res.(int64); base == nil || n != 1 {
			return Record{}, false
		}
		rec := *base
		rec.Values = c.apply(base.Values)
		return rec, true
	}
}

// incrNext sets the incremented value in the entry the cache held.
func incrNext(name string) cacheNext {
	return func(base *Record, res any) (Record, bool) {
		list, ok := res.([]any)
		if base == nil || !ok || len(list) != 1 {
			return Record{}, false
		}
		v, ok := list[0].(string)
		if !ok {
			return Record{}, false
		}
		rec := copyRecord(*base)
		rec.Values[name] = v
		return rec, true
	}
}

// runLoad runs the load script on the tracking connection, in one MULTI
// with the reads that track the session again: one round trip, as run's.
// The cache keeps what the script left. If the tracking connection is down
// (or the wait for it outlasts ctx), it runs the script as run does, and the
// session is confirmed into the cache in the background.
func (c *redisCache) runLoad(ctx context.Context, k Key, p Policy, keys []string, args ...any) *redis.Cmd {
	for _, eval := range []func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd{scriptLoad.EvalSha, scriptLoad.Eval} {
		var cmd *redis.Cmd
		err := c.throughTracker(ctx, k, p, func(pipe redis.Pipeliner) func() (any, error) {
			cmd = eval(ctx, pipe, keys, args...)
			return cmd.Result
		}, true, loadedNext(k), keys)
		if err == nil && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			continue // not run: try again with the script's body
		}
		if err == nil && c.redirected(cmd.Err()) {
			break // not run: through the client, which follows the slot
		}
		if err == nil {
			if cmd.Err() != nil {
				cmd.SetErr(refusal(cmd.Err()))
			}
			return cmd
		}
		if !trackerUnavailable(err) {
			c.s.noteFailure(err) // the node may be gone
		}
		break
	}
	cmd := c.s.run(ctx, scriptLoad, keys, args...)
	if cmd.Err() == nil {
		c.confirm(k, p)
	}
	return cmd
}

// trackerUnavailable reports whether err says a call could not go through
// a tracking connection at all (busy until ctx ended, down, no node), so
// nothing was sent.
func trackerUnavailable(err error) bool {
	return errors.Is(err, errTrackerBusy) || errors.Is(err, errEpochEnded) || errors.Is(err, errNotTracked)
}

// runPlain sends an Update's or Incr's plain commands (w) on the tracking
// connection, keeping the entry current as runLoad does; through the
// client, dropping the entry, if the tracking connection is down.
// It returns w's reply and error, which w.finish acts on.
func (c *redisCache) runPlain(ctx context.Context, w *plainWrite, p Policy, next cacheNext) (any, error) {
	err := c.throughTracker(ctx, w.k, p, func(pipe redis.Pipeliner) func() (any, error) {
		w.queue(ctx, pipe)
		return w.reply
	}, false, next, w.keys)
	if err == nil {
		res, rerr := w.reply()
		if !c.redirected(rerr) {
			return res, rerr
		}
		// not run: through the client, which follows the slot
	} else if !trackerUnavailable(err) {
		c.s.noteFailure(err) // the node may be gone; the write may or may not have run
		return nil, err
	}
	res, err := c.s.sendPlain(ctx, w)
	c.wrote(w.k)
	return res, err
}

// throughTracker sends what send queues (a script, or an update's plain
// commands) in one MULTI with the reads that keep k in the cache (PTTL of
// the hash; for a load, GET of the generation and TIME), on the tracking
// connection, and caches what next makes of the reply send's function
// returns (shaped as the script's) if nothing that could have changed the
// session was reported or written meanwhile.
func (c *redisCache) throughTracker(ctx context.Context, k Key, p Policy,
	send func(pipe redis.Pipeliner) (reply func() (any, error)), load bool, next cacheNext, keys []string) error {
	node, err := c.nodeFor(ctx, keys[0])
	if err != nil {
		return err
	}
	c.mu.Lock()
	writes := c.writes
	var base *cacheEntry
	if e, ok := c.m[k]; ok {
		base = e.Value.(*cacheEntry)
	}
	c.mu.Unlock()
	topo := c.topo.Load()
	sent := time.Now()
	var (
		reply func() (any, error)
		gen   *redis.StringCmd
		pttl  *redis.DurationCmd
		now   *redis.TimeCmd
	)
	err = node.inv.trackMulti(ctx, keys[0], func(pipe redis.Pipeliner) {
		reply = send(pipe)
		pttl = pipe.PTTL(ctx, keys[0]) // tracks the hash again, after the script's writes
		if load {
			// The scripts read the generation, and so track it; these
			// reads are belt and braces, and the server's clock for the
			// last-seen time's age.
			if len(keys) > 1 {
				gen = pipe.Get(ctx, keys[1])
			}
			now = pipe.Time(ctx)
		}
	}, func(_ []redis.Cmder, epoch uint64, reported func(string) bool) {
		res, err := reply()
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			return // nothing ran: the entry stays, for the EVAL that follows
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		var held *cacheEntry
		if e, ok := c.m[k]; ok {
			held = e.Value.(*cacheEntry)
			c.removeLocked(e)
		}
		if c.writes != writes || reported(keys[0]) || (gen != nil && reported(keys[1])) {
			return
		}
		if err != nil || pttl.Err() != nil || (now != nil && now.Err() != nil) || (gen != nil && gen.Err() != nil) {
			return
		}
		var from *Record
		if base != nil && held == base && base.node == node && base.epoch == epoch && base.topo == topo {
			from = &base.rec
		}
		rec, ok := next(from, res)
		if !ok {
			return
		}
		var touchBy time.Time
		switch {
		case now != nil:
			touchBy = sent.Add(p.TouchInterval - now.Val().Sub(rec.LastSeen))
		case from != nil:
			touchBy = base.touchBy // the write wrote no last-seen time
		default:
			return
		}
		if until := minTime(touchBy, sent.Add(pttl.Val())); sent.Before(until) && time.Now().Before(rec.Expires) {
			c.putLocked(&cacheEntry{key: k, name: keys[0], rec: rec, node: node, epoch: epoch, topo: topo, until: until, touchBy: touchBy})
		}
	})
	return err
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// errCacheNeedsClient: the local cache was asked for on a client it cannot
// track through.
func errCacheNeedsClient(c redis.UniversalClient) error {
	return fmt.Errorf("%w: RedisOptions.LocalCache needs a single-node, Sentinel or Cluster client (*redis.Client or *redis.ClusterClient), not a %T: a Ring's shards are not tracked", ErrInvalidOptions, c)
}
