package session

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FallbackOptions configures NewFallbackStore. The zero value of every field
// means its default.
type FallbackOptions struct {
	// Timeout bounds each call to the primary on the request path, whatever
	// the client's own socket timeouts: a blackholed Redis costs a request
	// at most this much, once. Default 100ms.
	Timeout time.Duration
	// ProbeInterval is how often, while the breaker is open, a single probe
	// checks whether the primary is back. Default 500ms.
	ProbeInterval time.Duration
	// LocalCopies is how many sessions read from the primary this instance
	// keeps a copy of, so that their users stay signed in through an
	// outage. Default 10,000. Negative disables the copies: an outage then
	// signs users out on this instance, but a revocation made on another
	// instance during the outage can never be missed here.
	LocalCopies int
	// MaxInFlight bounds the primary calls still running after their
	// deadline passed (go-redis finishes them at its own timeouts); past it,
	// calls fail at once instead of piling up. Default 64.
	MaxInFlight int
	// Logger hears the breaker open and close. Default: slog.Default().
	// Pass the Manager's Logger to have one log.
	Logger *slog.Logger
	// Observer hears the breaker open and close and every call served
	// from memory. Default: none. Pass the Manager's Observer to have
	// these events beside the Manager's.
	Observer Observer
}

// ErrUnavailable: the primary store did not answer in time and the
// operation could not safely be served from the fallback.
var ErrUnavailable = errors.New("session: store unavailable")

// FallbackStore serves sessions from a primary store (Redis) and, while the
// primary is slow or down, from a MemoryStore, so the application keeps
// serving. It is safe for concurrent use; Close stops its probe.
//
// A circuit breaker decides where calls go. Closed: every call goes to the
// primary with a deadline (FallbackOptions.Timeout). The first call that
// fails for want of an answer opens the breaker and is served by the
// fallback: from then on the primary lacks something only this instance
// knows, so it is not trusted again until the outage has been replayed to
// it. Open: calls go to the fallback only, and one probe at a time
// (every ProbeInterval) checks the primary. When it answers, the store
// replays the outage to it, logouts and revocations first, then sessions
// created or changed during the outage (field by field; a session that
// ended on the primary meanwhile is not brought back), and only then
// closes the breaker.
//
// Trade-offs, all local to one instance: during an outage, a session this
// instance has not read recently is anonymous here; a revocation made on
// another instance is not seen here until the primary is back; a session
// created here is unknown to other instances until then. Incr is not
// idempotent, so an Incr whose primary call fails returns ErrUnavailable
// instead of counting again in the fallback (the primary may have counted
// it). A field changed both here during the outage and on the primary ends
// with this instance's value when the outage is replayed.
type FallbackStore struct {
	primary  Store
	memory   *MemoryStore
	ownsMem  bool
	timeout  time.Duration
	probeGap time.Duration
	maxIn    int64
	local    *localCopies // nil when disabled

	logger   *slog.Logger
	observer Observer // nil: none

	abandoned atomic.Int64 // primary calls past their deadline, still running
	open      atomic.Bool  // changes only under mu

	mu       sync.Mutex // guards the fields below; fallback calls run under it
	journal  []tombstone
	dirty    map[Key]*dirtySession
	inMemory map[Key]Policy // sessions put into memory during this outage

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// tombstone is a logout or revocation made during an outage, replayed to
// the primary before anything else.
type tombstone struct {
	key    Key    // Delete, or RevokeAll's keep
	userID string // Revoke or RevokeAll
	id     string // Revoke
	all    bool   // RevokeAll
}

// dirtySession is what the outage did to one session: created it, or
// changed some of its fields.
type dirtySession struct {
	created bool
	change  map[string]*string // nil value: deleted
	policy  Policy
}

// NewFallbackStore returns a store that uses primary while it answers and
// fallback while it does not. A nil fallback gets a NewMemoryStore that
// Close closes. It refuses a nil primary and negative or sub-millisecond
// durations with ErrInvalidOptions. No I/O happens here.
func NewFallbackStore(primary Store, fallback *MemoryStore, opts FallbackOptions) (*FallbackStore, error) {
	if primary == nil {
		return nil, fmt.Errorf("%w: NewFallbackStore needs a primary store", ErrInvalidOptions)
	}
	if err := checkDurations(
		namedDuration{"FallbackOptions.Timeout", opts.Timeout},
		namedDuration{"FallbackOptions.ProbeInterval", opts.ProbeInterval},
	); err != nil {
		return nil, err
	}
	if opts.MaxInFlight < 0 {
		return nil, fmt.Errorf("%w: FallbackOptions.MaxInFlight is negative", ErrInvalidOptions)
	}
	f := &FallbackStore{
		primary:  primary,
		memory:   fallback,
		timeout:  orDefault(opts.Timeout, 100*time.Millisecond),
		probeGap: orDefault(opts.ProbeInterval, 500*time.Millisecond),
		maxIn:    int64(opts.MaxInFlight),
		observer: opts.Observer,
		logger:   opts.Logger,
		dirty:    map[Key]*dirtySession{},
		inMemory: map[Key]Policy{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if f.memory == nil {
		f.memory, f.ownsMem = NewMemoryStore(), true
	}
	if f.maxIn == 0 {
		f.maxIn = 64
	}
	if f.logger == nil {
		f.logger = slog.Default()
	}
	switch {
	case opts.LocalCopies == 0:
		f.local = newLocalCopies(10_000)
	case opts.LocalCopies > 0:
		f.local = newLocalCopies(opts.LocalCopies)
	}
	go f.probeLoop()
	return f, nil
}

func (f *FallbackStore) log() *slog.Logger { return f.logger }

func (f *FallbackStore) notify(kind EventKind, err error) {
	if f.observer != nil {
		f.observer.Observe(Event{Kind: kind, Err: err})
	}
}

// Healthy reports whether the breaker is closed: calls go to the primary.
func (f *FallbackStore) Healthy() bool { return !f.open.Load() }

// Close stops the probe, and closes the fallback if NewFallbackStore made it.
func (f *FallbackStore) Close() error {
	f.closeOnce.Do(func() {
		close(f.stop)
		<-f.done
		if f.ownsMem {
			f.memory.Close()
		}
	})
	return nil
}

// isAnswer reports whether err is the store's answer, not its absence.
func isAnswer(err error) bool {
	return err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidUserID) ||
		errors.Is(err, ErrNotInteger) || errors.Is(err, errSessionExists)
}

// callPrimary runs call against the primary within the deadline. A call
// still running at the deadline is abandoned (the client ends it at its own
// timeouts) and its result discarded. outage reports a failure for want of
// an answer; it opens the breaker.
func callPrimary[T any](ctx context.Context, f *FallbackStore, call func(context.Context) (T, error)) (v T, outage bool, err error) {
	if n := f.abandoned.Load(); n >= f.maxIn {
		err = fmt.Errorf("%w: %d abandoned calls to the primary still running", ErrUnavailable, n)
		f.openBreaker(err)
		return v, true, err
	}
	type result struct {
		v   T
		err error
	}
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	const running, finished, abandoned = 0, 1, 2
	var state atomic.Int32
	done := make(chan result, 1)
	go func() {
		v, err := call(cctx)
		done <- result{v, err}
		if !state.CompareAndSwap(running, finished) {
			f.abandoned.Add(-1) // the caller had given up on it
		}
	}()
	select {
	case r := <-done:
		v, err = r.v, r.err
	case <-cctx.Done():
		f.abandoned.Add(1)
		if state.CompareAndSwap(running, abandoned) {
			err = cctx.Err()
			break
		}
		f.abandoned.Add(-1) // it finished just now after all
		r := <-done
		v, err = r.v, r.err
	}
	if isAnswer(err) {
		return v, false, err
	}
	if ctx.Err() != nil {
		return v, false, ctx.Err() // the caller gave up: not the primary's fault
	}
	f.openBreaker(err)
	return v, true, err
}

func (f *FallbackStore) openBreaker(cause error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.open.Load() {
		f.open.Store(true)
		f.notify(EventPrimaryDown, cause)
		f.log().Warn("session store: primary unavailable; serving from memory until it answers and the outage is replayed", "error", cause)
	}
}

// maxRoutes bounds how often one call may find the breaker closed again
// just as it was about to use the fallback.
const maxRoutes = 3

// route sends one call to the primary while the breaker is closed, and to
// the fallback, under f.mu, while it is open. Holding f.mu orders fallback
// writes with recovery: a write never lands in memory after the replay
// that closed the breaker. onPrimary sees every answer of the primary;
// ambiguous calls (Incr) are not served by the fallback after a failure.
func route[T any](ctx context.Context, f *FallbackStore, primary func(context.Context) (T, error), onPrimary func(T, error), ambiguous bool, fallback func() (T, error)) (T, error) {
	var zero T
	for range maxRoutes {
		if !f.open.Load() {
			v, outage, err := callPrimary(ctx, f, primary)
			if !outage {
				if onPrimary != nil {
					onPrimary(v, err)
				}
				return v, err
			}
			if ambiguous {
				return zero, fmt.Errorf("%w: the primary may or may not have applied it: %v", ErrUnavailable, err)
			}
		}
		f.mu.Lock()
		if f.open.Load() {
			v, err := fallback()
			f.mu.Unlock()
			f.notify(EventFallback, err)
			return v, err
		}
		f.mu.Unlock()
	}
	return zero, fmt.Errorf("%w: the primary is flapping", ErrUnavailable)
}

// restoreLocked makes sure the fallback holds k if this instance knows it,
// restoring it from the local copy if need be. The caller holds f.mu.
func (f *FallbackStore) restoreLocked(ctx context.Context, k Key, p Policy) {
	if _, ok := f.memory.peek(k); ok {
		return
	}
	rec, ok := f.local.get(k, time.Now())
	if !ok {
		return
	}
	if _, err := f.memory.Create(ctx, k, rec, p); err == nil {
		f.inMemory[k] = p
	}
}

// markChanged records c as done to k during the outage. The caller holds f.mu.
func (f *FallbackStore) markChanged(k Key, c Change, p Policy) {
	d := f.dirty[k]
	if d == nil {
		d = &dirtySession{change: map[string]*string{}}
		f.dirty[k] = d
	}
	d.policy = p
	if d.created {
		return // replayed whole
	}
	for _, name := range c.Delete {
		d.change[name] = nil
	}
	for name, v := range c.Set {
		d.change[name] = &v
	}
}

// markCreated records that k was created during the outage. The caller holds f.mu.
func (f *FallbackStore) markCreated(k Key, p Policy) {
	f.inMemory[k] = p
	f.dirty[k] = &dirtySession{created: true, policy: p}
}

// forgetLocked drops what this instance knows of k. The caller holds f.mu.
func (f *FallbackStore) forgetLocked(k Key) {
	f.local.drop(k)
	delete(f.dirty, k)
}

// Create implements Store.
func (f *FallbackStore) Create(ctx context.Context, k Key, rec Record, p Policy) (Record, error) {
	return route(ctx, f,
		func(ctx context.Context) (Record, error) { return f.primary.Create(ctx, k, rec, p) },
		func(out Record, err error) {
			if err == nil {
				f.local.put(k, out, p)
			}
		}, false,
		func() (Record, error) {
			out, err := f.memory.Create(ctx, k, rec, p)
			if err == nil {
				f.markCreated(k, p)
			}
			return out, err
		})
}

// Load implements Store.
func (f *FallbackStore) Load(ctx context.Context, k Key, c Client, p Policy) (Record, error) {
	return route(ctx, f,
		func(ctx context.Context) (Record, error) { return f.primary.Load(ctx, k, c, p) },
		func(rec Record, err error) {
			if err == nil {
				f.local.put(k, rec, p)
			} else {
				f.local.drop(k)
			}
		}, false,
		func() (Record, error) {
			f.restoreLocked(ctx, k, p)
			return f.memory.Load(ctx, k, c, p)
		})
}

// Update implements Store.
func (f *FallbackStore) Update(ctx context.Context, k Key, c Change, p Policy) error {
	_, err := route(ctx, f,
		func(ctx context.Context) (struct{}, error) { return struct{}{}, f.primary.Update(ctx, k, c, p) },
		func(_ struct{}, err error) {
			if err == nil {
				f.local.apply(k, c)
			} else {
				f.local.drop(k)
			}
		}, false,
		func() (struct{}, error) {
			f.restoreLocked(ctx, k, p)
			if err := f.memory.Update(ctx, k, c, p); err != nil {
				return struct{}{}, err
			}
			f.markChanged(k, c, p)
			return struct{}{}, nil
		})
	return err
}

// Incr implements Store. Unlike the other writes, an Incr whose primary
// call failed may still have been applied there, and applying it again
// would count twice: such a call returns ErrUnavailable. Once the breaker
// is open, the primary sees nothing, and Incr counts in the fallback.
func (f *FallbackStore) Incr(ctx context.Context, k Key, name string, delta int64, p Policy) (int64, error) {
	return route(ctx, f,
		func(ctx context.Context) (int64, error) { return f.primary.Incr(ctx, k, name, delta, p) },
		func(n int64, err error) {
			if err == nil {
				f.local.apply(k, Change{Set: map[string]string{name: fmt.Sprint(n)}})
			}
		}, true,
		func() (int64, error) {
			f.restoreLocked(ctx, k, p)
			n, err := f.memory.Incr(ctx, k, name, delta, p)
			if err == nil {
				f.markChanged(k, Change{Set: map[string]string{name: fmt.Sprint(n)}}, p)
			}
			return n, err
		})
}

// Rotate implements Store.
func (f *FallbackStore) Rotate(ctx context.Context, r Rotation, p Policy) (Record, error) {
	return route(ctx, f,
		func(ctx context.Context) (Record, error) { return f.primary.Rotate(ctx, r, p) },
		func(out Record, err error) {
			f.local.drop(r.From)
			if err == nil {
				f.local.put(r.To, out, p)
			}
		}, false,
		func() (Record, error) {
			if !r.From.IsZero() {
				f.restoreLocked(ctx, r.From, p)
			}
			out, err := f.memory.Rotate(ctx, r, p)
			if err != nil {
				return out, err
			}
			if !r.From.IsZero() {
				f.forgetLocked(r.From)
				f.journal = append(f.journal, tombstone{key: r.From})
			}
			f.markCreated(r.To, p)
			return out, nil
		})
}

// Delete implements Store.
func (f *FallbackStore) Delete(ctx context.Context, k Key) error {
	_, err := route(ctx, f,
		func(ctx context.Context) (struct{}, error) { return struct{}{}, f.primary.Delete(ctx, k) },
		func(struct{}, error) { f.local.drop(k) }, false,
		func() (struct{}, error) {
			if err := f.memory.Delete(ctx, k); err != nil {
				return struct{}{}, err
			}
			f.forgetLocked(k)
			f.journal = append(f.journal, tombstone{key: k})
			return struct{}{}, nil
		})
	return err
}

// List implements Store. During an outage it lists the sessions this
// instance holds or has a copy of.
func (f *FallbackStore) List(ctx context.Context, userID string) ([]Info, error) {
	return route(ctx, f,
		func(ctx context.Context) ([]Info, error) { return f.primary.List(ctx, userID) },
		nil, false,
		func() ([]Info, error) {
			list, err := f.memory.List(ctx, userID)
			if err != nil {
				return nil, err
			}
			seen := map[string]bool{}
			for _, in := range list {
				seen[in.ID] = true
			}
			for _, in := range f.local.ofUser(userID, time.Now()) {
				if !seen[in.ID] {
					list = append(list, in)
				}
			}
			return list, nil
		})
}

// Revoke implements Store. During an outage it cannot tell whether the
// primary holds such a session, so it records the revocation and succeeds.
func (f *FallbackStore) Revoke(ctx context.Context, userID, id string) error {
	if err := ValidateUserID(userID); err != nil {
		return err
	}
	isID := func(rec Record) bool { return rec.ID == id }
	_, err := route(ctx, f,
		func(ctx context.Context) (struct{}, error) { return struct{}{}, f.primary.Revoke(ctx, userID, id) },
		func(_ struct{}, err error) {
			if err == nil {
				f.local.dropWhere(userID, isID)
			}
		}, false,
		func() (struct{}, error) {
			_ = f.memory.Revoke(ctx, userID, id) // ErrNotFound: it may still live on the primary
			for _, k := range f.local.dropWhere(userID, isID) {
				delete(f.dirty, k)
			}
			for k := range f.dirty {
				if _, held := f.memory.peek(k); k.UserID == userID && !held {
					delete(f.dirty, k)
				}
			}
			f.journal = append(f.journal, tombstone{userID: userID, id: id})
			return struct{}{}, nil
		})
	return err
}

// RevokeAll implements Store. During an outage it counts the sessions this
// instance knew of; the replay ends the rest.
func (f *FallbackStore) RevokeAll(ctx context.Context, userID string, keep Key) (int, error) {
	if err := ValidateUserID(userID); err != nil {
		return 0, err
	}
	all := func(Record) bool { return true }
	return route(ctx, f,
		func(ctx context.Context) (int, error) { return f.primary.RevokeAll(ctx, userID, keep) },
		func(_ int, err error) {
			if err == nil {
				f.local.dropWhere(userID, all, keep)
			}
		}, false,
		func() (int, error) {
			n, err := f.memory.RevokeAll(ctx, userID, keep)
			if err != nil {
				return 0, err
			}
			for _, k := range f.local.dropWhere(userID, all, keep) {
				if _, held := f.inMemory[k]; !held {
					n++
				}
			}
			for k := range f.dirty {
				if k.UserID == userID && k != keep {
					delete(f.dirty, k)
				}
			}
			f.journal = append(f.journal, tombstone{userID: userID, key: keep, all: true})
			return n, nil
		})
}

// probeLoop checks, one probe at a time, whether the primary is back.
func (f *FallbackStore) probeLoop() {
	defer close(f.done)
	t := time.NewTicker(f.probeGap)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			if f.open.Load() {
				f.recover()
			}
		}
	}
}

// probeKey names no session: a load of it answers ErrNotFound when the
// primary is up.
var probeKey = Key{Hash: strings.Repeat("0", 43)}

// recover probes the primary and, if it answers, replays the outage to it
// and closes the breaker. It stops at the first failure and tries again at
// the next probe; nothing is dropped.
func (f *FallbackStore) recover() {
	ctx := context.Background()
	if _, outage, _ := callPrimary(ctx, f, func(ctx context.Context) (Record, error) {
		return f.primary.Load(ctx, probeKey, Client{}, Policy{IdleTimeout: time.Second, Lifetime: time.Second})
	}); outage {
		return
	}
	// Writes may land in memory while a batch replays; each pass takes what
	// is there, and the breaker closes only on a pass that finds nothing.
	for pass := 0; pass < 10; pass++ {
		f.mu.Lock()
		if len(f.journal) == 0 && len(f.dirty) == 0 {
			for k, p := range f.inMemory {
				// The primary has it now, or it ended. Keep a copy, as for a
				// session read from the primary, so that the next outage does
				// not sign out users whose sessions were made in this one.
				if rec, ok := f.memory.peek(k); ok {
					f.local.put(k, rec, p)
				}
				_ = f.memory.Delete(ctx, k)
			}
			clear(f.inMemory)
			// Reported before it happens, so that whoever sees Healthy()
			// turn true finds the transition in the log and the metrics.
			f.notify(EventPrimaryUp, nil)
			f.log().Info("session store: primary answers again; outage replayed, breaker closed")
			f.open.Store(false)
			f.mu.Unlock()
			return
		}
		journal, dirty := f.journal, f.dirty
		f.journal, f.dirty = nil, map[Key]*dirtySession{}
		records := make(map[Key]Record, len(dirty))
		for k, d := range dirty {
			if d.created {
				if rec, ok := f.memory.peek(k); ok {
					records[k] = rec
				}
			}
		}
		f.mu.Unlock()

		if !f.replay(ctx, journal, dirty, records) {
			return
		}
	}
}

// replay applies one batch to the primary: tombstones first, then sessions,
// each phase replayWorkers calls at a time. On failure it puts back what it
// did not apply and reports false.
func (f *FallbackStore) replay(ctx context.Context, journal []tombstone, dirty map[Key]*dirtySession, records map[Key]Record) bool {
	if left := replayAll(journal, func(t tombstone) bool {
		_, outage, _ := callPrimary(ctx, f, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, f.replayTombstone(ctx, t)
		})
		return outage
	}); len(left) > 0 {
		f.putBack(left, dirty)
		return false
	}
	keys := make([]Key, 0, len(dirty))
	for k := range dirty {
		keys = append(keys, k)
	}
	left := replayAll(keys, func(k Key) bool {
		_, outage, err := callPrimary(ctx, f, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, f.replaySession(ctx, k, dirty[k], records)
		})
		if errors.Is(err, ErrNotFound) {
			f.log().Info("session store: a session changed during the outage had ended on the primary; not restored", "user", k.UserID)
		}
		return outage
	})
	if len(left) > 0 {
		rest := make(map[Key]*dirtySession, len(left))
		for _, k := range left {
			rest[k] = dirty[k]
		}
		f.putBack(nil, rest)
		return false
	}
	return true
}

// replayWorkers is how many replayed calls are in flight at once: an outage
// under load leaves tens of thousands of sessions to replay, and one at a
// time would keep the breaker open for many seconds after the primary is back.
const replayWorkers = 16

// replayAll calls apply on every item, replayWorkers at a time, until one
// reports an outage, and returns the items it did not apply.
func replayAll[T any](items []T, apply func(T) (outage bool)) (left []T) {
	var (
		next    atomic.Int64
		stopped atomic.Bool
		wg      sync.WaitGroup
	)
	applied := make([]bool, len(items))
	for range min(replayWorkers, len(items)) {
		wg.Go(func() {
			for !stopped.Load() {
				i := int(next.Add(1)) - 1
				if i >= len(items) {
					return
				}
				if apply(items[i]) {
					stopped.Store(true)
					return
				}
				applied[i] = true
			}
		})
	}
	wg.Wait()
	for i, ok := range applied {
		if !ok {
			left = append(left, items[i])
		}
	}
	return left
}

func (f *FallbackStore) replayTombstone(ctx context.Context, t tombstone) error {
	switch {
	case t.all:
		_, err := f.primary.RevokeAll(ctx, t.userID, t.key)
		return err
	case t.id != "":
		return f.primary.Revoke(ctx, t.userID, t.id)
	}
	return f.primary.Delete(ctx, t.key)
}

func (f *FallbackStore) replaySession(ctx context.Context, k Key, d *dirtySession, records map[Key]Record) error {
	if !d.created {
		c := Change{Set: map[string]string{}}
		for name, v := range d.change {
			if v == nil {
				c.Delete = append(c.Delete, name)
			} else {
				c.Set[name] = *v
			}
		}
		return f.primary.Update(ctx, k, c, d.policy)
	}
	rec, ok := records[k]
	if !ok {
		return nil // logged out, revoked or expired since: nothing to keep
	}
	_, err := f.primary.Create(ctx, k, rec, d.policy)
	if errors.Is(err, errSessionExists) {
		// An earlier attempt reached the primary after all: bring it up to date.
		return f.primary.Update(ctx, k, Change{Set: rec.Values}, d.policy)
	}
	return err
}

// putBack returns unapplied work to the queues, ahead of anything newer.
func (f *FallbackStore) putBack(journal []tombstone, dirty map[Key]*dirtySession) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.journal = append(append([]tombstone(nil), journal...), f.journal...)
	for k, older := range dirty {
		newer, ok := f.dirty[k]
		if !ok {
			f.dirty[k] = older
			continue
		}
		newer.created = newer.created || older.created
		for name, v := range older.change {
			if _, changedSince := newer.change[name]; !changedSince {
				newer.change[name] = v
			}
		}
	}
}

// localCopies keeps the sessions this instance read most recently, for
// serving their users during an outage. A nil *localCopies keeps nothing.
type localCopies struct {
	mu  sync.Mutex
	max int
	m   map[Key]*list.Element
	lru list.List // of *localCopy, most recent first
}

type localCopy struct {
	key    Key
	rec    Record
	usedAt time.Time
	idle   time.Duration
}

func newLocalCopies(max int) *localCopies {
	return &localCopies{max: max, m: map[Key]*list.Element{}}
}

func (l *localCopies) put(k Key, rec Record, p Policy) {
	if l == nil {
		return
	}
	rec = copyRecord(rec)
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &localCopy{key: k, rec: rec, usedAt: time.Now(), idle: p.IdleTimeout}
	if e, ok := l.m[k]; ok {
		e.Value = c
		l.lru.MoveToFront(e)
		return
	}
	l.m[k] = l.lru.PushFront(c)
	for l.lru.Len() > l.max {
		old := l.lru.Remove(l.lru.Back()).(*localCopy)
		delete(l.m, old.key)
	}
}

// apply keeps a copy in step with a write the primary accepted.
func (l *localCopies) apply(k Key, c Change) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.m[k]; ok {
		lc := e.Value.(*localCopy)
		lc.rec.Values = c.apply(lc.rec.Values)
		lc.usedAt = time.Now()
	}
}

// get returns a live copy of k.
func (l *localCopies) get(k Key, now time.Time) (Record, bool) {
	if l == nil {
		return Record{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[k]
	if !ok {
		return Record{}, false
	}
	lc := e.Value.(*localCopy)
	if !now.Before(lc.usedAt.Add(lc.idle)) || !now.Before(lc.rec.Expires) {
		l.lru.Remove(e)
		delete(l.m, k)
		return Record{}, false
	}
	return copyRecord(lc.rec), true
}

func (l *localCopies) drop(k Key) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.m[k]; ok {
		l.lru.Remove(e)
		delete(l.m, k)
	}
}

// dropWhere drops userID's copies that match, except keep, and returns their keys.
func (l *localCopies) dropWhere(userID string, match func(Record) bool, keep ...Key) []Key {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var dropped []Key
	for k, e := range l.m {
		if k.UserID != userID || (len(keep) > 0 && k == keep[0]) || !match(e.Value.(*localCopy).rec) {
			continue
		}
		l.lru.Remove(e)
		delete(l.m, k)
		dropped = append(dropped, k)
	}
	return dropped
}

// ofUser lists userID's live copies.
func (l *localCopies) ofUser(userID string, now time.Time) []Info {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Info
	for k, e := range l.m {
		lc := e.Value.(*localCopy)
		if k.UserID == userID && now.Before(lc.usedAt.Add(lc.idle)) && now.Before(lc.rec.Expires) {
			out = append(out, lc.rec.Info)
		}
	}
	return out
}
