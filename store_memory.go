package session

import (
	"container/list"
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMemoryMaxSessions is the MemoryStore's size cap unless
// WithMaxSessions says otherwise.
const DefaultMemoryMaxSessions = 100_000

// MemoryStore keeps sessions in this process: for development, tests, and
// as FallbackStore's store during Redis outages. It is safe for concurrent
// use. It holds at most a fixed number of sessions; when full, creating one
// drops the least recently used, so a flood of new sessions cannot exhaust
// memory. A janitor goroutine reclaims expired sessions; Close stops it.
// The zero value is not usable: use NewMemoryStore.
type MemoryStore struct {
	mu       sync.Mutex
	sessions map[Key]*memEntry
	byUser   map[string]map[string]*memEntry // user ID -> hash -> entry: the per-user index
	lru      list.List                       // of *memEntry, most recently used first
	max      int
	// What restored records are checked against (see Store.Create): the
	// public IDs Revoke ended, with when they would have expired, and when
	// RevokeAll last ended each user's sessions.
	revokedIDs   map[string]map[string]time.Time
	revokedAllAt map[string]time.Time

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type memEntry struct {
	key      Key
	rec      Record
	idleEnds time.Time
	// rememberedIdle is a remembered session's own idle timeout; 0: the Policy's.
	rememberedIdle time.Duration
	elem           *list.Element
}

// MemoryOption configures NewMemoryStore.
type MemoryOption func(*memoryConfig)

type memoryConfig struct {
	max      int
	interval time.Duration
}

// WithMaxSessions caps how many sessions the store holds (default
// DefaultMemoryMaxSessions). Values below 1 keep the default.
func WithMaxSessions(n int) MemoryOption {
	return func(c *memoryConfig) {
		if n > 0 {
			c.max = n
		}
	}
}

// WithCleanupInterval sets how often the janitor reclaims expired sessions
// (default 1m). Values below 1ms keep the default.
func WithCleanupInterval(d time.Duration) MemoryOption {
	return func(c *memoryConfig) {
		if d >= time.Millisecond {
			c.interval = d
		}
	}
}

// NewMemoryStore returns an empty MemoryStore and starts its janitor.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	cfg := memoryConfig{max: DefaultMemoryMaxSessions, interval: time.Minute}
	for _, o := range opts {
		o(&cfg)
	}
	s := &MemoryStore{
		sessions:     make(map[Key]*memEntry),
		byUser:       make(map[string]map[string]*memEntry),
		revokedIDs:   make(map[string]map[string]time.Time),
		revokedAllAt: make(map[string]time.Time),
		max:          cfg.max,
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	go s.janitor(cfg.interval)
	return s
}

// Close stops the janitor. The store still answers afterwards, but no
// longer reclaims expired sessions in the background.
func (s *MemoryStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
	})
	return nil
}

// Len returns how many sessions the store holds, expired ones not yet
// reclaimed included.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *MemoryStore) janitor(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.reclaimExpired()
		}
	}
}

func (s *MemoryStore) reclaimExpired() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, e := range s.sessions {
		if !e.aliveAt(now) {
			s.remove(e)
		}
	}
	for user, ids := range s.revokedIDs {
		for id, expires := range ids {
			if !now.Before(expires) {
				delete(ids, id)
			}
		}
		if len(ids) == 0 {
			delete(s.revokedIDs, user)
		}
	}
	for user, at := range s.revokedAllAt {
		if now.Sub(at) > revocationMemory {
			delete(s.revokedAllAt, user)
		}
	}
}

func (e *memEntry) aliveAt(now time.Time) bool {
	return now.Before(e.idleEnds) && now.Before(e.rec.Expires)
}

// live returns the entry for k if it exists and has not expired; an expired
// one is removed on the way.
func (s *MemoryStore) live(k Key, now time.Time) (*memEntry, bool) {
	e, ok := s.sessions[k]
	if !ok {
		return nil, false
	}
	if !e.aliveAt(now) {
		s.remove(e)
		return nil, false
	}
	return e, true
}

func (s *MemoryStore) remove(e *memEntry) {
	delete(s.sessions, e.key)
	s.lru.Remove(e.elem)
	if e.key.UserID != "" {
		idx := s.byUser[e.key.UserID]
		delete(idx, e.key.Hash)
		if len(idx) == 0 {
			delete(s.byUser, e.key.UserID)
		}
	}
}

// slide restarts the idle clock, never past the absolute end. A
// remembered session slides by the idle timeout it was created with.
func (e *memEntry) slide(now time.Time, p Policy) {
	idle := p.IdleTimeout
	if e.rememberedIdle > 0 {
		idle = e.rememberedIdle
	}
	e.idleEnds = now.Add(idle)
	if e.idleEnds.After(e.rec.Expires) {
		e.idleEnds = e.rec.Expires
	}
}

func (s *MemoryStore) use(e *memEntry, now time.Time, p Policy) {
	e.slide(now, p)
	s.lru.MoveToFront(e.elem)
}

func checkKey(k Key) error {
	if !validHash(k.Hash) {
		return ErrNotFound
	}
	if k.UserID != "" {
		return ValidateUserID(k.UserID)
	}
	return nil
}

// Create implements Store.
func (s *MemoryStore) Create(ctx context.Context, k Key, rec Record, p Policy) (Record, error) {
	if err := checkKey(k); err != nil {
		return Record{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	rec.LastSeen = now
	if rec.Expires.IsZero() {
		rec.Created, rec.Expires = now, now.Add(p.Lifetime)
	} else if s.revokedLocked(k.UserID, rec, now) {
		return Record{}, errRevoked
	}
	rec.Horizon = time.Time{}
	return s.insert(k, rec, now, p)
}

// revokedLocked reports whether a revocation ended the restored record rec
// of userID. The caller holds s.mu.
func (s *MemoryStore) revokedLocked(userID string, rec Record, now time.Time) bool {
	if userID == "" {
		return false
	}
	if expires, ok := s.revokedIDs[userID][rec.ID]; ok && now.Before(expires) {
		return true
	}
	at, ok := s.revokedAllAt[userID]
	return ok && !rec.Horizon.IsZero() && at.After(rec.Horizon)
}

// insert adds rec under k; the caller holds s.mu and has set rec's times.
func (s *MemoryStore) insert(k Key, rec Record, now time.Time, p Policy) (Record, error) {
	if _, exists := s.live(k, now); exists {
		return Record{}, ErrSessionExists
	}
	if !now.Before(rec.Expires) {
		return Record{}, ErrNotFound
	}
	rec.UserID = k.UserID
	rec.Values = copyValues(rec.Values)
	e := &memEntry{key: k, rec: rec}
	if rec.Remembered {
		e.rememberedIdle = p.IdleTimeout
	}
	e.slide(now, p)
	for len(s.sessions) >= s.max {
		s.remove(s.lru.Back().Value.(*memEntry))
	}
	e.elem = s.lru.PushFront(e)
	s.sessions[k] = e
	if k.UserID != "" {
		idx := s.byUser[k.UserID]
		if idx == nil {
			idx = make(map[string]*memEntry)
			s.byUser[k.UserID] = idx
		}
		idx[k.Hash] = e
		s.enforceCap(k, now, p)
	}
	return copyRecord(rec), nil
}

// enforceCap revokes the least recently seen sessions of k's user beyond
// p.MaxSessionsPerUser, never k itself.
func (s *MemoryStore) enforceCap(k Key, now time.Time, p Policy) {
	if p.MaxSessionsPerUser <= 0 {
		return
	}
	idx := s.byUser[k.UserID]
	for len(idx) > p.MaxSessionsPerUser {
		var oldest *memEntry
		for h, e := range idx {
			if h == k.Hash {
				continue
			}
			if !e.aliveAt(now) {
				oldest = e
				break
			}
			if oldest == nil || e.rec.LastSeen.Before(oldest.rec.LastSeen) {
				oldest = e
			}
		}
		s.remove(oldest)
	}
}

// Load implements Store.
func (s *MemoryStore) Load(ctx context.Context, k Key, c Client, p Policy) (Record, error) {
	if err := checkKey(k); err != nil {
		return Record{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	e, ok := s.live(k, now)
	if !ok {
		return Record{}, ErrNotFound
	}
	s.use(e, now, p)
	if now.Sub(e.rec.LastSeen) >= p.TouchInterval {
		e.rec.LastSeen, e.rec.UserAgent, e.rec.IP = now, c.UserAgent, c.IP
	}
	return copyRecord(e.rec), nil
}

// Update implements Store.
func (s *MemoryStore) Update(ctx context.Context, k Key, c Change, p Policy) error {
	if err := checkKey(k); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	e, ok := s.live(k, now)
	if !ok {
		return ErrNotFound
	}
	for _, name := range c.Delete {
		delete(e.rec.Values, name)
	}
	for name, v := range c.Set {
		e.rec.Values[name] = v
	}
	s.use(e, now, p)
	return nil
}

// Incr implements Store.
func (s *MemoryStore) Incr(ctx context.Context, k Key, name string, delta int64, p Policy) (int64, error) {
	if err := checkKey(k); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	e, ok := s.live(k, now)
	if !ok {
		return 0, ErrNotFound
	}
	n, err := addInt(e.rec.Values, name, delta)
	if err != nil {
		return 0, err
	}
	e.rec.Values[name] = strconv.FormatInt(n, 10)
	s.use(e, now, p)
	return n, nil
}

// addInt adds delta to the integer stored under name in values (absent
// counts as 0), as Store.Incr defines it: the value must be an integer as
// parseCounter reads it and the sum must stay within int64.
func addInt(values map[string]string, name string, delta int64) (int64, error) {
	v, present := values[name]
	return addCounter(v, present, delta)
}

// addCounter is addInt for one value v, absent unless present.
func addCounter(v string, present bool, delta int64) (int64, error) {
	var n int64
	if present {
		var ok bool
		if n, ok = parseCounter(v); !ok {
			return 0, ErrNotInteger
		}
	}
	if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
		return 0, ErrNotInteger
	}
	return n + delta, nil
}

// parseCounter reads v as Redis's HINCRBY reads a hash value (string2ll):
// "0", or an optional '-' followed by a digit 1-9 and more digits, within
// the int64 range. So "+5", "05", "-0", " 5" and "" are not integers,
// though strconv.ParseInt takes some of them; every store must agree.
func parseCounter(v string) (int64, bool) {
	if v == "0" {
		return 0, true
	}
	digits := strings.TrimPrefix(v, "-")
	if digits == "" || digits[0] < '1' || digits[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64) // rejects what is left: non-digits, overflow
	return n, err == nil
}

// Rotate implements Store. It runs under the store's lock, so it is atomic
// with every other call: a revocation comes wholly before or after it. All
// that can refuse the rotation is checked before the old session goes, so a
// refused rotation leaves it untouched.
func (s *MemoryStore) Rotate(ctx context.Context, r Rotation, p Policy) (Record, error) {
	if err := checkKey(r.To); err != nil {
		return Record{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var old *memEntry
	if !r.From.IsZero() {
		old, _ = s.live(r.From, now)
	}
	if r.Renew && old == nil {
		return Record{}, ErrNotFound
	}
	if _, exists := s.live(r.To, now); exists {
		return Record{}, ErrSessionExists
	}
	rec := r.Record
	values := rec.Values
	if old != nil {
		values = old.rec.Values
	}
	rec.Values = r.Change.apply(values)
	if r.Renew {
		rec.ID, rec.Created, rec.Expires = old.rec.ID, old.rec.Created, old.rec.Expires
	} else {
		rec.Created, rec.Expires = now, now.Add(p.Lifetime)
	}
	if !now.Before(rec.Expires) {
		return Record{}, ErrNotFound
	}
	rec.LastSeen = now
	if old != nil {
		s.remove(old)
	}
	return s.insert(r.To, rec, now, p)
}

// Delete implements Store.
func (s *MemoryStore) Delete(ctx context.Context, k Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.sessions[k]; ok {
		s.remove(e)
	}
	return nil
}

// List implements Store.
func (s *MemoryStore) List(ctx context.Context, userID string) ([]Info, error) {
	if err := ValidateUserID(userID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []Info
	for _, e := range s.byUser[userID] {
		if e.aliveAt(now) {
			out = append(out, e.rec.Info)
		} else {
			s.remove(e)
		}
	}
	return out, nil
}

// Revoke implements Store.
func (s *MemoryStore) Revoke(ctx context.Context, userID, id string) error {
	if err := ValidateUserID(userID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, e := range s.byUser[userID] {
		if e.rec.ID == id {
			alive := e.aliveAt(now)
			s.remove(e)
			if alive {
				if s.revokedIDs[userID] == nil {
					s.revokedIDs[userID] = make(map[string]time.Time)
				}
				s.revokedIDs[userID][id] = e.rec.Expires
				return nil
			}
		}
	}
	return ErrNotFound
}

// RevokeAll implements Store.
func (s *MemoryStore) RevokeAll(ctx context.Context, userID string, keep Key) (int, error) {
	if err := ValidateUserID(userID); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.revokedAllAt[userID] = now
	n := 0
	for h, e := range s.byUser[userID] {
		if h == keep.Hash && keep.UserID == userID {
			continue
		}
		if e.aliveAt(now) {
			n++
		}
		s.remove(e)
	}
	return n, nil
}

func copyValues(v map[string]string) map[string]string {
	out := make(map[string]string, len(v))
	for k, x := range v {
		out[k] = x
	}
	return out
}

func copyRecord(r Record) Record {
	r.Values = copyValues(r.Values)
	return r
}

// peek returns a copy of k's record if it is live, without counting as a use.
func (s *MemoryStore) peek(k Key) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.live(k, time.Now())
	if !ok {
		return Record{}, false
	}
	return copyRecord(e.rec), true
}
