package session

import (
	"container/list"
	"sync"
	"time"
)

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
