package session

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
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
	//
	// A copy is served only if nothing changed or ended its session on the
	// primary since it was read: the primary must implement ChangeFeed
	// (RedisStore does on a single node or Sentinel, with Redis 6 or
	// later), the feed must have been up from the copy's read until the
	// outage began, and a copy read before the feed was last lost is never
	// served. With a primary that cannot report changes (Redis Cluster for
	// now, miniredis, another Store), no copies are kept: the safe default.
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

// FallbackStore serves sessions from a primary store (Redis) and, while the
// primary is slow or down, from a MemoryStore, so the application keeps
// serving. It is safe for concurrent use; Close stops its probe. The zero
// FallbackStore is not usable: make one with NewFallbackStore.
//
// A circuit breaker decides where calls go. Closed: every call goes to the
// primary with a deadline (FallbackOptions.Timeout). An error the primary
// answers with (one wrapping ErrRefused, such as Redis's OOM or READONLY,
// or ErrNotFound) goes to the caller and leaves the breaker closed: the
// primary is up, and serving from memory would hide from this instance
// what other instances do there. The first call that fails for want of an
// answer opens the breaker and is served by the fallback: from then on the primary lacks something only this instance
// knows, so it is not trusted again until the outage has been replayed to
// it. Open: calls go to the fallback only, and one probe at a time
// (every ProbeInterval) checks the primary. When it answers, the store
// replays the outage to it, logouts and revocations first, then sessions
// created or changed during the outage (field by field; a session that
// ended on the primary meanwhile is not brought back), and only then
// closes the breaker. If the primary refuses a replayed logout or
// revocation, the breaker stays open and the replay is retried at every
// probe; a replayed session write it refuses is dropped with a warning, so
// that a full Redis does not keep the store on memory.
//
// Local copies (FallbackOptions.LocalCopies) keep users signed in through
// an outage: a copy is confirmed under the primary's ChangeFeed after each
// answer about its session, dropped and read again when the feed reports a
// change, and served only in an outage that began while its feed epoch
// was up.
//
// What an outage replay never does: bring back a session that a logout,
// Revoke or RevokeAll ended on the primary. A session created or renewed
// here during the outage is restored as a record that Store.Create checks
// against revocations (its public ID revoked, or a RevokeAll of its user
// after the primary time this instance last saw before the outage). A
// session this instance kept through its own RevokeAll (LogoutOthers) is
// restored before that RevokeAll is replayed, so it stays; but a RevokeAll
// made here counts against any other session made here after it, which
// ends at the replay rather than being restored.
//
// Trade-offs, all local to one instance: during an outage, a session this
// instance holds no confirmed copy of is anonymous here (including one
// written here within a round trip of the outage); a revocation made on
// another instance is not seen here until the primary is back; a session
// created here is unknown to other instances until then. An outage in which
// the primary lost its data (Redis restarted without persistence) ends the
// sessions this instance only served from copies: nothing proves they were
// not ended meanwhile. Incr is not idempotent, so an Incr whose primary call
// fails returns ErrUnavailable instead of counting again in the fallback
// (the primary may have counted it). A field changed both here during the
// outage and on the primary ends with this instance's value when the
// outage is replayed.
type FallbackStore struct {
	primary      Store
	memory       *MemoryStore
	ownsMem      bool
	timeout      time.Duration
	probeGap     time.Duration
	maxAbandoned int64         // calls past their deadline allowed to run on; FallbackOptions.MaxInFlight
	local        *localCopies  // nil when disabled or the primary cannot report changes
	watch        SessionWatch  // the primary's change feed; nil without one
	copyEpoch    atomic.Uint64 // the feed epoch whose copies this outage may serve; set as the breaker opens

	logger   *slog.Logger
	observer Observer // nil: none

	abandoned    atomic.Int64 // primary calls past their deadline, still running
	primaryClock atomic.Int64 // the latest primary time seen in its answers, µs since 1970
	open         atomic.Bool  // changes only under mu

	mu       sync.Mutex // guards the fields below; fallback calls run under it
	horizon  time.Time  // primaryClock when the breaker opened: what this outage's replay saw
	journal  []tombstone
	dirty    map[Key]*dirtySession
	inMemory map[Key]Policy // sessions put into memory during this outage

	confirmMu   sync.Mutex
	toConfirm   map[Key]Policy // sessions to read again under the change feed
	confirmWake chan struct{}
	confirmDone chan struct{}

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
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
		primary:      primary,
		memory:       fallback,
		timeout:      orDefault(opts.Timeout, 100*time.Millisecond),
		probeGap:     orDefault(opts.ProbeInterval, 500*time.Millisecond),
		maxAbandoned: int64(opts.MaxInFlight),
		observer:     opts.Observer,
		logger:       opts.Logger,
		dirty:        map[Key]*dirtySession{},
		inMemory:     map[Key]Policy{},
		toConfirm:    map[Key]Policy{},
		confirmWake:  make(chan struct{}, 1),
		confirmDone:  make(chan struct{}),
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	if f.memory == nil {
		f.memory, f.ownsMem = NewMemoryStore(), true
	}
	if f.maxAbandoned == 0 {
		f.maxAbandoned = 64
	}
	if f.logger == nil {
		f.logger = slog.Default()
	}
	if feed, ok := primary.(ChangeFeed); ok && opts.LocalCopies >= 0 {
		local := newLocalCopies(cmp.Or(opts.LocalCopies, 10_000))
		f.local = local // before the feed starts: it reports to feedChanged
		if watch, err := feed.WatchSessions(f.feedChanged); err != nil {
			f.local = nil
			f.log().Info("session store: no local copies for outages: the primary cannot report changes", "error", err)
		} else {
			f.watch = watch
		}
	}
	if f.watch != nil {
		go f.confirmLoop()
	} else {
		close(f.confirmDone)
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
		<-f.confirmDone
		if f.watch != nil {
			f.watch.Close()
		}
		if f.ownsMem {
			f.memory.Close()
		}
	})
	return nil
}

// Create implements Store.
func (f *FallbackStore) Create(ctx context.Context, k Key, rec Record, p Policy) (Record, error) {
	return route(ctx, f, call[Record]{
		primary: func(ctx context.Context) (Record, error) { return f.primary.Create(ctx, k, rec, p) },
		onAnswer: func(out Record, err error) {
			if err == nil {
				f.sawPrimaryTime(out)
				f.confirm(k, p)
			}
		},
		fallback: func() (Record, error) {
			out, err := f.memory.Create(ctx, k, rec, p)
			if err == nil {
				f.markCreated(k, p)
			}
			return out, err
		},
	})
}

// Load implements Store.
func (f *FallbackStore) Load(ctx context.Context, k Key, c Client, p Policy) (Record, error) {
	return route(ctx, f, call[Record]{
		primary: func(ctx context.Context) (Record, error) { return f.primary.Load(ctx, k, c, p) },
		onAnswer: func(rec Record, err error) {
			if err == nil {
				f.sawPrimaryTime(rec)
				f.confirm(k, p)
			} else {
				f.local.drop(k)
			}
		},
		fallback: func() (Record, error) {
			f.restoreLocked(ctx, k, p)
			return f.memory.Load(ctx, k, c, p)
		},
	})
}

// Update implements Store.
func (f *FallbackStore) Update(ctx context.Context, k Key, c Change, p Policy) error {
	_, err := route(ctx, f, call[struct{}]{
		primary: func(ctx context.Context) (struct{}, error) { return struct{}{}, f.primary.Update(ctx, k, c, p) },
		onAnswer: func(_ struct{}, err error) {
			// The copy is older than this write: drop it at once rather
			// than when the feed reports the write.
			f.local.drop(k)
			if err == nil {
				f.confirm(k, p)
			}
		},
		fallback: func() (struct{}, error) {
			f.restoreLocked(ctx, k, p)
			if err := f.memory.Update(ctx, k, c, p); err != nil {
				return struct{}{}, err
			}
			f.markChanged(k, c, p)
			return struct{}{}, nil
		},
	})
	return err
}

// Incr implements Store. Unlike the other writes, an Incr whose primary
// call failed may still have been applied there, and applying it again
// would count twice: such a call returns ErrUnavailable. Once the breaker
// is open, the primary sees nothing, and Incr counts in the fallback.
func (f *FallbackStore) Incr(ctx context.Context, k Key, name string, delta int64, p Policy) (int64, error) {
	return route(ctx, f, call[int64]{
		primary: func(ctx context.Context) (int64, error) { return f.primary.Incr(ctx, k, name, delta, p) },
		onAnswer: func(_ int64, err error) {
			f.local.drop(k) // older than this write
			if err == nil {
				f.confirm(k, p)
			}
		},
		notIdempotent: true,
		fallback: func() (int64, error) {
			f.restoreLocked(ctx, k, p)
			n, err := f.memory.Incr(ctx, k, name, delta, p)
			if err == nil {
				f.markChanged(k, Change{Set: map[string]string{name: fmt.Sprint(n)}}, p)
			}
			return n, err
		},
	})
}

// Rotate implements Store.
func (f *FallbackStore) Rotate(ctx context.Context, r Rotation, p Policy) (Record, error) {
	return route(ctx, f, call[Record]{
		primary: func(ctx context.Context) (Record, error) { return f.primary.Rotate(ctx, r, p) },
		onAnswer: func(out Record, err error) {
			f.local.drop(r.From)
			if err == nil {
				f.sawPrimaryTime(out)
				f.confirm(r.To, p)
			}
		},
		fallback: func() (Record, error) {
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
		},
	})
}

// Delete implements Store.
func (f *FallbackStore) Delete(ctx context.Context, k Key) error {
	_, err := route(ctx, f, call[struct{}]{
		primary:  func(ctx context.Context) (struct{}, error) { return struct{}{}, f.primary.Delete(ctx, k) },
		onAnswer: func(struct{}, error) { f.local.drop(k) },
		fallback: func() (struct{}, error) {
			if err := f.memory.Delete(ctx, k); err != nil {
				return struct{}{}, err
			}
			f.forgetLocked(k)
			f.journal = append(f.journal, tombstone{key: k})
			return struct{}{}, nil
		},
	})
	return err
}

// List implements Store. During an outage it lists the sessions this
// instance holds or has a copy of.
func (f *FallbackStore) List(ctx context.Context, userID string) ([]Info, error) {
	return route(ctx, f, call[[]Info]{
		primary: func(ctx context.Context) ([]Info, error) { return f.primary.List(ctx, userID) },
		fallback: func() ([]Info, error) {
			list, err := f.memory.List(ctx, userID)
			if err != nil {
				return nil, err
			}
			seen := map[string]bool{}
			for _, in := range list {
				seen[in.ID] = true
			}
			for _, in := range f.local.ofUser(userID, time.Now(), f.copyEpoch.Load()) {
				if !seen[in.ID] {
					list = append(list, in)
				}
			}
			return list, nil
		},
	})
}

// Revoke implements Store. During an outage it cannot tell whether the
// primary holds such a session, so it records the revocation and succeeds.
func (f *FallbackStore) Revoke(ctx context.Context, userID, id string) error {
	if err := ValidateUserID(userID); err != nil {
		return err
	}
	isID := func(rec Record) bool { return rec.ID == id }
	_, err := route(ctx, f, call[struct{}]{
		primary: func(ctx context.Context) (struct{}, error) { return struct{}{}, f.primary.Revoke(ctx, userID, id) },
		onAnswer: func(_ struct{}, err error) {
			if err == nil {
				f.local.dropWhere(userID, isID)
			}
		},
		fallback: func() (struct{}, error) {
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
		},
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
	return route(ctx, f, call[int]{
		primary: func(ctx context.Context) (int, error) { return f.primary.RevokeAll(ctx, userID, keep) },
		onAnswer: func(_ int, err error) {
			if err == nil {
				f.local.dropWhere(userID, all, keep)
			}
		},
		fallback: func() (int, error) {
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
		},
	})
}
