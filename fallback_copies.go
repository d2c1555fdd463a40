package session

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// ChangeFeed is implemented by a primary store that can report every later
// change to the sessions this process asks it to watch, whoever makes it.
// FallbackStore keeps local copies (FallbackOptions.LocalCopies) only of a
// primary that implements it, because a copy may be served in an outage
// only if nothing changed or ended that session since it was confirmed.
// RedisStore implements it on a single node or Sentinel.
type ChangeFeed interface {
	// WatchSessions starts the feed; it must not block on I/O. changed is
	// called with the sessions that changed or ended since they were
	// watched: a Key with an empty Hash stands for every session of its
	// UserID, and a nil slice for every session at all.
	WatchSessions(changed func(keys []Key)) (SessionWatch, error)
}

// SessionWatch is a running ChangeFeed. It is safe for concurrent use.
type SessionWatch interface {
	// Watch reads the sessions keys as stored now and calls keep with each
	// one that is live, and with the epoch under which any later change to
	// it will be reported to changed. A report that comes after keep was
	// called reaches changed after keep returned.
	Watch(ctx context.Context, keys []Key, keep func(k Key, rec Record, epoch uint64)) error
	// Epoch returns the feed's current or last epoch, and when it ended
	// (zero while the feed is up). Reports promised under an epoch may
	// have been lost once it ended.
	Epoch() (epoch uint64, downSince time.Time)
	// Close stops the feed.
	Close() error
}

// copyGrace is how long before the breaker opened the change feed may have
// been lost for copies confirmed under it to be served in that outage:
// a primary that dies takes the feed and the breaker's calls down within
// moments of each other, in either order.
const copyGrace = 2 * time.Second

// confirmBatch bounds how many sessions one Watch call confirms.
const confirmBatch = 512

// trustedEpoch is the feed epoch whose copies an outage beginning now may
// serve; 0 for none.
func (f *FallbackStore) trustedEpoch() uint64 {
	if f.watch == nil {
		return 0
	}
	epoch, downSince := f.watch.Epoch()
	if !downSince.IsZero() && time.Since(downSince) > copyGrace {
		return 0
	}
	return epoch
}

// confirm asks for a copy of k, read from the primary under the change
// feed, once it is up to date: after a call to the primary answered for it.
func (f *FallbackStore) confirm(k Key, p Policy) {
	if f.local == nil || f.watch == nil {
		return
	}
	f.confirmMu.Lock()
	if len(f.toConfirm) < f.local.max {
		f.toConfirm[k] = p
	}
	f.confirmMu.Unlock()
	select {
	case f.confirmWake <- struct{}{}:
	default:
	}
}

// confirmLoop confirms copies in batches, one batch at a time, so that
// under load one Watch call covers many sessions.
func (f *FallbackStore) confirmLoop() {
	defer close(f.confirmDone)
	for {
		select {
		case <-f.stop:
			return
		case <-f.confirmWake:
		}
		for {
			f.confirmMu.Lock()
			batch := make(map[Key]Policy, min(len(f.toConfirm), confirmBatch))
			for k, p := range f.toConfirm {
				if len(batch) == confirmBatch {
					break
				}
				batch[k] = p
				delete(f.toConfirm, k)
			}
			f.confirmMu.Unlock()
			if len(batch) == 0 || f.open.Load() {
				break // while the primary is down, copies are confirmed when next read
			}
			keys := make([]Key, 0, len(batch))
			for k := range batch {
				keys = append(keys, k)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*f.timeout)
			err := f.watch.Watch(ctx, keys, func(k Key, rec Record, epoch uint64) {
				f.local.put(k, rec, batch[k], epoch)
			})
			cancel()
			if err != nil {
				// Nothing was confirmed, so no copy is served. Try again
				// shortly, or when the feed is back (feedChanged wakes us).
				f.requeue(batch)
				select {
				case <-f.stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, down := f.watch.Epoch(); !down.IsZero() {
					break
				}
			}
		}
	}
}

// requeue puts back a batch that could not be confirmed, behind anything
// asked for since, within the copies' size.
func (f *FallbackStore) requeue(batch map[Key]Policy) {
	f.confirmMu.Lock()
	defer f.confirmMu.Unlock()
	for k, p := range batch {
		if len(f.toConfirm) >= f.local.max {
			return
		}
		if _, newer := f.toConfirm[k]; !newer {
			f.toConfirm[k] = p
		}
	}
}

// feedChanged hears the change feed: it drops the copies reported and
// reads them again under the feed, since most reports are of changes that
// leave the session live (its own touches, another device's login).
func (f *FallbackStore) feedChanged(keys []Key) {
	for _, c := range f.local.changed(keys) {
		f.confirm(c.key, c.policy)
	}
	if keys == nil {
		select { // a new epoch: confirm what waited for the feed
		case f.confirmWake <- struct{}{}:
		default:
		}
	}
}

// localCopies keeps copies of the sessions this instance read most
// recently, each confirmed under a change-feed epoch, for serving their
// users during an outage. A nil *localCopies keeps nothing.
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
	policy Policy
	epoch  uint64 // the change-feed epoch it was confirmed under
}

func newLocalCopies(max int) *localCopies {
	return &localCopies{max: max, m: map[Key]*list.Element{}}
}

func (l *localCopies) put(k Key, rec Record, p Policy, epoch uint64) {
	if l == nil {
		return
	}
	rec = copyRecord(rec)
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &localCopy{key: k, rec: rec, usedAt: time.Now(), policy: p, epoch: epoch}
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

// servable reports whether c may be served at now in an outage that
// trusts epoch.
func (c *localCopy) servable(now time.Time, epoch uint64) bool {
	return epoch != 0 && c.epoch == epoch && now.Before(c.usedAt.Add(c.policy.IdleTimeout)) && now.Before(c.rec.Expires)
}

// get returns k's copy if it may be served in an outage that trusts epoch.
func (l *localCopies) get(k Key, now time.Time, epoch uint64) (Record, bool) {
	if l == nil {
		return Record{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[k]
	if !ok {
		return Record{}, false
	}
	if c := e.Value.(*localCopy); c.servable(now, epoch) {
		return copyRecord(c.rec), true
	}
	l.lru.Remove(e)
	delete(l.m, k)
	return Record{}, false
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

// changed drops the copies a change feed reports (keys as in ChangeFeed)
// and returns them.
func (l *localCopies) changed(keys []Key) []*localCopy {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var dropped []*localCopy
	take := func(e *list.Element) {
		c := l.lru.Remove(e).(*localCopy)
		delete(l.m, c.key)
		dropped = append(dropped, c)
	}
	if keys == nil {
		for _, e := range l.m {
			take(e)
		}
		return dropped
	}
	for _, k := range keys {
		if k.Hash != "" {
			if e, ok := l.m[k]; ok {
				take(e)
			}
			continue
		}
		for ck, e := range l.m {
			if ck.UserID == k.UserID {
				take(e)
			}
		}
	}
	return dropped
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

// ofUser lists userID's copies that an outage trusting epoch may serve.
func (l *localCopies) ofUser(userID string, now time.Time, epoch uint64) []Info {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Info
	for k, e := range l.m {
		if c := e.Value.(*localCopy); k.UserID == userID && c.servable(now, epoch) {
			out = append(out, c.rec.Info)
		}
	}
	return out
}
