package session

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

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

// sawPrimaryTime notes the primary's clock as rec, which the primary just
// returned, shows it: a lower bound of its time now.
func (f *FallbackStore) sawPrimaryTime(rec Record) {
	t := max(rec.Created.UnixMicro(), rec.LastSeen.UnixMicro())
	for {
		seen := f.primaryClock.Load()
		if t <= seen || f.primaryClock.CompareAndSwap(seen, t) {
			return
		}
	}
}

// restoreLocked makes sure the fallback holds k if this instance knows it,
// restoring it from the local copy if need be. The caller holds f.mu.
func (f *FallbackStore) restoreLocked(ctx context.Context, k Key, p Policy) {
	if _, ok := f.memory.peek(k); ok {
		return
	}
	rec, ok := f.local.get(k, time.Now(), f.copyEpoch.Load())
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

// recover probes the primary and, if it answers, replays the outage to it
// and closes the breaker. It stops at the first failure and tries again at
// the next probe; nothing is dropped for want of an answer. What the primary
// refuses is handled in replay.
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
			confirmed := make(map[Key]Policy, len(f.inMemory))
			for k, p := range f.inMemory {
				_ = f.memory.Delete(ctx, k)
				confirmed[k] = p
			}
			clear(f.inMemory)
			// Reported before it happens, so that whoever sees Healthy()
			// turn true finds the transition in the log and the metrics.
			f.notify(EventPrimaryUp, nil)
			f.log().Info("session store: primary answers again; outage replayed, breaker closed")
			f.open.Store(false)
			f.mu.Unlock()
			// The primary has them now, or they ended there. Read them back
			// under the change feed, as sessions read from the primary, so
			// that the next outage does not sign out users whose sessions
			// were made in this one.
			for k, p := range confirmed {
				f.confirm(k, p)
			}
			return
		}
		journal, dirty := f.journal, f.dirty
		f.journal, f.dirty = nil, map[Key]*dirtySession{}
		records := make(map[Key]Record, len(dirty))
		for k, d := range dirty {
			if d.created {
				if rec, ok := f.memory.peek(k); ok {
					rec.Horizon = f.horizon
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
	// A session made here and kept through this instance's own RevokeAll
	// (LogoutOthers after a login or renewal during the outage) goes to the
	// primary first, so that the replayed RevokeAll keeps it instead of
	// leaving it a generation its restore would be refused for.
	var kept []Key
	for _, t := range journal {
		if d, ok := dirty[t.key]; t.all && ok && d.created && !slices.Contains(kept, t.key) {
			kept = append(kept, t.key)
		}
	}
	if left := f.replaySessions(ctx, kept, dirty, records); len(left) > 0 {
		f.putBack(journal, dirty)
		return false
	}
	for _, k := range kept {
		delete(dirty, k)
	}
	if left := replayAll(journal, func(t tombstone) bool {
		_, outage, err := callPrimary(ctx, f, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, f.replayTombstone(ctx, t)
		})
		if errors.Is(err, ErrRefused) {
			// A logout the primary will not take yet (full, read-only) stays
			// queued, and this instance on memory, where it holds: letting
			// the primary serve that session again would undo it.
			f.log().Error("session store: the primary refused a logout or revocation made during the outage; serving from memory until it takes it", "user", t.userID, "error", err)
			return true
		}
		return outage
	}); len(left) > 0 {
		f.putBack(left, dirty)
		return false
	}
	keys := make([]Key, 0, len(dirty))
	for k := range dirty {
		keys = append(keys, k)
	}
	if left := f.replaySessions(ctx, keys, dirty, records); len(left) > 0 {
		rest := make(map[Key]*dirtySession, len(left))
		for _, k := range left {
			rest[k] = dirty[k]
		}
		f.putBack(nil, rest)
		return false
	}
	return true
}

// replaySessions replays what the outage did to the sessions keys and
// returns those it could not for want of an answer.
func (f *FallbackStore) replaySessions(ctx context.Context, keys []Key, dirty map[Key]*dirtySession, records map[Key]Record) (left []Key) {
	return replayAll(keys, func(k Key) bool {
		_, outage, err := callPrimary(ctx, f, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, f.replaySession(ctx, k, dirty[k], records)
		})
		switch {
		case errors.Is(err, ErrNotFound):
			f.log().Info("session store: a session changed during the outage had ended on the primary; not restored", "user", k.UserID)
		case errors.Is(err, ErrRefused):
			// The primary answers but will not take it (full, read-only):
			// keeping it queued would keep this instance on memory for as
			// long as that lasts, so what the outage did to this session is
			// dropped, and said so.
			f.log().Warn("session store: the primary refused a session written during the outage; its outage changes are lost", "user", k.UserID, "error", err)
		}
		return outage
	})
}

// replayWorkers is how many replayed calls are in flight at once: an outage
// under load leaves tens of thousands of sessions to replay, and one at a
// time would keep the breaker open for many seconds after the primary is back.
const replayWorkers = 16

// replayAll calls apply on every item, replayWorkers at a time, until one
// reports that the replay must stop, and returns the items it did not apply.
func replayAll[T any](items []T, apply func(T) (stop bool)) (left []T) {
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
	if errors.Is(err, ErrSessionExists) {
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
