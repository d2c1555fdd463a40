package session

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// invalidator keeps Redis's server-assisted invalidation (CLIENT TRACKING)
// going for one process, so that copies of keys kept outside Redis can be
// trusted exactly as long as Redis would have said they changed.
//
// It owns its connections, made from the store client's options: a
// subscriber on __redis__:invalidate (RESP2 Pub/Sub) and one or more
// tracking connections whose CLIENT TRACKING ON REDIRECT points at the
// subscriber. Keys read on a tracking connection (track, trackMulti) are
// reported to onChange the next time anyone changes, expires, evicts or
// deletes them. The set is an epoch: when any connection is lost, or a
// heartbeat (a PING on each, every heartbeat) goes unanswered, reports may have been lost, so the
// epoch ends, and the next one begins with onChange(nil) ("everything may
// have changed"). It is safe for concurrent use.
type invalidator struct {
	base     redis.Options // the store client's options, for our own connections
	onChange func(keys []string)

	mu        sync.Mutex
	epoch     uint64        // the current or last epoch; 0 before the first
	up        bool          // the current epoch is live
	liveEpoch atomic.Uint64 // epoch while up, 0 while down: for readers that must not wait on mu
	downSince time.Time     // when the last epoch ended
	trk       []*trackConn  // the tracking connections, while up
	conns     int           // how many tracking connections to keep
	broken    bool          // a tracking connection failed a call: the epoch must end
	sub       *redis.PubSub
	pongs     map[string]chan struct{} // barrier tokens awaiting their pong
	token     atomic.Uint64
	windows   map[*trackWindow]struct{} // track calls between barrier and reply

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// trackConn is one tracking connection: sticky, so that what it tracks
// stays tracked (a client's pool, and its separate pipeline pool, would
// track keys on whichever connection read them, and lose them unnoticed
// with that connection).
type trackConn struct {
	// lock is held while a call is on c, which takes one at a time; a
	// channel, so that a wait for it can end with its context, and its
	// waiters go in turn.
	lock chan struct{}
	c    *redis.Conn
}

// acquire takes t's lock, waiting for it until ctx ends (errTrackerBusy).
func (t *trackConn) acquire(ctx context.Context) error {
	select {
	case t.lock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", errTrackerBusy, ctx.Err())
	}
	return nil
}

// tryAcquire takes t's lock if it is free at once.
func (t *trackConn) tryAcquire() bool {
	select {
	case t.lock <- struct{}{}:
		return true
	default:
		return false
	}
}

func (t *trackConn) release() { <-t.lock }

// invalidationHeartbeat is how often both connections are checked; an
// epoch ends at most about twice this long after a connection silently died.
const invalidationHeartbeat = time.Second

// newInvalidator starts an invalidator with conns tracking connections (at
// least 1), each redirected to the one subscriber.
func newInvalidator(base redis.Options, conns int, onChange func(keys []string)) *invalidator {
	// The store's client may change its own maintenance-notification
	// config as it connects; these connections use none (RESP2).
	base.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	inv := &invalidator{base: base, conns: max(1, conns), onChange: onChange, pongs: map[string]chan struct{}{}, windows: map[*trackWindow]struct{}{},
		stop: make(chan struct{}), done: make(chan struct{}), downSince: time.Now()}
	go inv.run()
	return inv
}

// Close ends the invalidator and its connections.
func (inv *invalidator) Close() error {
	inv.closeOnce.Do(func() {
		close(inv.stop)
		<-inv.done
	})
	return nil
}

// state returns the current epoch and, if it is not live, when it ended.
func (inv *invalidator) state() (epoch uint64, downSince time.Time) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.up {
		return inv.epoch, time.Time{}
	}
	return inv.epoch, inv.downSince
}

func (inv *invalidator) run() {
	defer close(inv.done)
	backoff := 100 * time.Millisecond
	for {
		began := time.Now()
		err := inv.session()
		inv.endEpoch()
		if err == nil {
			return // stopped
		}
		if time.Since(began) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-inv.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (inv *invalidator) endEpoch() {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.up {
		inv.up, inv.downSince = false, time.Now()
	}
	inv.liveEpoch.Store(0)
	inv.trk, inv.sub = nil, nil
	for token, ch := range inv.pongs {
		close(ch)
		delete(inv.pongs, token)
	}
}

// errEpochEnded: the connections a call relied on are gone.
var errEpochEnded = errors.New("session: invalidation connection lost")

// session runs one epoch: it connects, and returns nil when stopped or the
// error that ended the epoch.
func (inv *invalidator) session() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-inv.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	// The subscriber: its client ID is learnt as it connects. A second
	// connect (go-redis redials a broken Pub/Sub connection by itself)
	// ends the epoch: the tracking connection redirects to the old ID.
	var subID, subConnects atomic.Int64
	subOpts := inv.base
	subOpts.Protocol = 2
	subOpts.PoolSize, subOpts.MinIdleConns, subOpts.MaxIdleConns = 1, 0, 1
	userOnConnect := inv.base.OnConnect
	subOpts.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if userOnConnect != nil {
			if err := userOnConnect(ctx, cn); err != nil {
				return err
			}
		}
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return err
		}
		subID.Store(id)
		subConnects.Add(1)
		return nil
	}
	subClient := redis.NewClient(&subOpts)
	defer subClient.Close()
	sub := subClient.Subscribe(ctx, "__redis__:invalidate")
	defer sub.Close()
	if _, err := sub.ReceiveTimeout(ctx, 2*invalidationHeartbeat); err != nil {
		return fmt.Errorf("subscribing to invalidations: %w", err)
	}
	if subConnects.Load() != 1 {
		return errors.New("subscriber reconnected while subscribing")
	}

	var trkConnects atomic.Int64
	trkOpts := inv.base
	trkOpts.Protocol = 2
	trkOpts.PoolSize, trkOpts.MinIdleConns, trkOpts.MaxIdleConns = inv.conns, 0, inv.conns
	trkOpts.ConnMaxIdleTime, trkOpts.ConnMaxLifetime = -1, 0
	trkOpts.MaxRetries = -1
	trkOpts.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if userOnConnect != nil {
			if err := userOnConnect(ctx, cn); err != nil {
				return err
			}
		}
		trkConnects.Add(1)
		// NOLOOP: a write sent on this connection (trackMulti) is not
		// reported back; its caller reads the key again on the same
		// connection, which tracks it anew.
		return cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", subID.Load(), "NOLOOP").Err()
	}
	trkClient := redis.NewClient(&trkOpts)
	defer trkClient.Close()
	trks := make([]*trackConn, inv.conns)
	for i := range trks {
		trks[i] = &trackConn{lock: make(chan struct{}, 1), c: trkClient.Conn()}
	}
	defer func() {
		// First: a call that takes a connection after its close sees the
		// epoch over (tracked) and sends nothing on it.
		inv.liveEpoch.Store(0)
		for _, t := range trks {
			t.lock <- struct{}{}
			t.c.Close()
			t.release()
		}
	}()
	for _, t := range trks {
		if err := t.c.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("turning tracking on: %w", err)
		}
	}

	inv.mu.Lock()
	inv.epoch++
	inv.up, inv.broken = true, false
	inv.liveEpoch.Store(inv.epoch)
	inv.trk, inv.sub = trks, sub
	inv.mu.Unlock()
	inv.report(nil) // whatever was trusted under an earlier epoch may have changed since

	lastPong := time.Now()
	nextBeat := time.Now().Add(invalidationHeartbeat)
	for {
		msg, err := sub.ReceiveTimeout(ctx, invalidationHeartbeat/2)
		switch m := msg.(type) {
		case *redis.Message:
			switch {
			case m.PayloadSlice != nil:
				inv.report(m.PayloadSlice)
			case m.Payload != "":
				inv.report([]string{m.Payload})
			}
		case *redis.Pong:
			lastPong = time.Now()
			inv.pong(m.Payload)
		}
		if err != nil {
			var netErr net.Error
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.As(err, &netErr) && netErr.Timeout():
			case strings.Contains(err.Error(), "unsupported pubsub message payload"):
				// A null invalidation: the server flushed its keys.
				inv.report(nil)
				return err
			default:
				return err
			}
		}
		if subConnects.Load() != 1 || trkConnects.Load() != int64(inv.conns) {
			return errors.New("an invalidation connection was re-established")
		}
		inv.mu.Lock()
		broken := inv.broken
		inv.broken = false
		inv.mu.Unlock()
		if broken {
			return errors.New("a tracking connection failed a call")
		}
		if now := time.Now(); now.After(nextBeat) {
			if now.Sub(lastPong) > 3*invalidationHeartbeat {
				return errors.New("the invalidation subscriber stopped answering")
			}
			pctx, cancel := context.WithTimeout(ctx, invalidationHeartbeat)
			for _, t := range trks {
				if !t.tryAcquire() {
					// In use: its calls show whether it is alive (one
					// that fails ends the epoch), and waiting behind them
					// would hold up the reports read on this goroutine.
					continue
				}
				err := t.c.Ping(pctx).Err()
				t.release()
				if err != nil {
					cancel()
					return fmt.Errorf("tracking connection: %w", err)
				}
			}
			cancel()
			if err := sub.Ping(ctx, "beat"); err != nil {
				return fmt.Errorf("invalidation subscriber: %w", err)
			}
			nextBeat = now.Add(invalidationHeartbeat)
		}
	}
}

// trackWindow collects what is reported while a track call's reads are
// on their way: such a key may have changed after the read, or before it
// (the report of an earlier change, still on its way), and cannot tell.
type trackWindow struct {
	all  bool
	keys map[string]bool
}

// report passes keys (nil: all) to onChange, and notes them in every open
// track window.
func (inv *invalidator) report(keys []string) {
	inv.mu.Lock()
	for w := range inv.windows {
		if keys == nil {
			w.all = true
		}
		for _, k := range keys {
			w.keys[k] = true
		}
	}
	inv.mu.Unlock()
	inv.onChange(keys)
}

func (inv *invalidator) pong(token string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if ch, ok := inv.pongs[token]; ok {
		close(ch)
		delete(inv.pongs, token)
	}
}

// barrier returns once every invalidation Redis sent before it ran this
// call has been passed to onChange: a PING on the subscriber, whose pong
// comes after them on the same connection.
func (inv *invalidator) barrier(ctx context.Context, epoch uint64) error {
	token := "b" + strconv.FormatUint(inv.token.Add(1), 10)
	ch := make(chan struct{})
	inv.mu.Lock()
	sub := inv.sub
	if !inv.up || inv.epoch != epoch || sub == nil {
		inv.mu.Unlock()
		return errEpochEnded
	}
	inv.pongs[token] = ch
	inv.mu.Unlock()
	if err := sub.Ping(ctx, token); err != nil {
		return err
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	if e, down := inv.state(); e != epoch || !down.IsZero() {
		return errEpochEnded
	}
	return nil
}

// connFor returns which tracking connection carries the calls on the key
// name. One key always goes through the same one: a write on one tracking
// connection of a key another one tracks would be reported (NOLOOP spares
// only the writer's own tracking) and drop what the write kept cached.
func (inv *invalidator) connFor(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32() % uint32(inv.conns))
}

// track runs reads on tracking connection conn (see connFor), so that
// every key they read is reported when it next changes. A barrier first
// lets every report of a change made before the call arrive. commit then
// sees what was read, the epoch under which the tracking holds, and
// reported: whether a key was reported while the reads were on their way
// (what they read of it may be stale already). commit runs with reports
// held off, so a report that comes after it was called reaches onChange
// after it returned; it must not call the invalidator.
func (inv *invalidator) track(ctx context.Context, conn int, reads func(redis.Pipeliner), commit func(cmds []redis.Cmder, epoch uint64, reported func(key string) bool)) error {
	epoch, trk, err := inv.live()
	if err != nil {
		return err
	}
	if err := inv.barrier(ctx, epoch); err != nil {
		return err
	}
	return inv.tracked(ctx, epoch, trk[conn], false, reads, commit)
}

// errTrackerBusy: the tracking connection stayed in use until the call's
// context ended; nothing was sent.
var errTrackerBusy = errors.New("session: tracking connection busy")

// trackMulti is track without the barrier, on the tracking connection of
// the key name (connFor), waiting for it while it is in use: a call that
// went through the client's pool instead would drop its session from the
// cache, so that under load every call did. Without the barrier, a report
// of a change made before the reads may land in their window and count as
// reported: a key is then not kept that could have been, never the other
// way round. The commands of reads run as one MULTI, so they may write:
// with NOLOOP, writes on this connection are not reported back, and
// untrack what they write, so they must be followed, in reads, by a read
// of every key they wrote that commit relies on; no other client's command
// can come between. A reply that is an error (a refused script) still
// reaches commit.
func (inv *invalidator) trackMulti(ctx context.Context, name string, reads func(redis.Pipeliner), commit func(cmds []redis.Cmder, epoch uint64, reported func(key string) bool)) error {
	epoch, trks, err := inv.live()
	if err != nil {
		return err
	}
	return inv.tracked(ctx, epoch, trks[inv.connFor(name)], true, reads, commit)
}

// live returns the current epoch and its tracking connection, or
// errEpochEnded while there is none.
func (inv *invalidator) live() (uint64, []*trackConn, error) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if !inv.up || inv.trk == nil {
		return 0, nil, errEpochEnded
	}
	return inv.epoch, inv.trk, nil
}

// tracked runs reads on trk, as one MULTI with multi, and commits them.
func (inv *invalidator) tracked(ctx context.Context, epoch uint64, trk *trackConn, multi bool, reads func(redis.Pipeliner), commit func(cmds []redis.Cmder, epoch uint64, reported func(key string) bool)) error {
	if err := trk.acquire(ctx); err != nil {
		return err
	}
	if inv.liveEpoch.Load() != epoch {
		// A call ahead of this one found the connection gone, or the epoch
		// ended and closed it: nothing is sent, so the caller may go
		// through the client's pool instead.
		trk.release()
		return errEpochEnded
	}
	w := &trackWindow{keys: map[string]bool{}}
	inv.mu.Lock()
	inv.windows[w] = struct{}{}
	inv.mu.Unlock()
	defer func() {
		inv.mu.Lock()
		delete(inv.windows, w)
		inv.mu.Unlock()
	}()
	pipelined := trk.c.Pipelined
	if multi {
		pipelined = trk.c.TxPipelined // its writes and the reads after them in one step
	}
	cmds, err := pipelined(ctx, func(p redis.Pipeliner) error {
		reads(p)
		return nil
	})
	var reply redis.Error
	if err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &reply) {
		// The connection is gone (go-redis drops one that failed a call),
		// and with it what it tracked: end the epoch now rather than at
		// the next heartbeat, before the next caller takes the connection.
		inv.mu.Lock()
		if inv.up && inv.epoch == epoch {
			inv.liveEpoch.Store(0)
			inv.broken = true
		}
		inv.mu.Unlock()
		trk.release()
		return err
	}
	trk.release()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if !inv.up || inv.epoch != epoch {
		return errEpochEnded
	}
	commit(cmds, epoch, func(key string) bool { return w.all || w.keys[key] })
	return nil
}
