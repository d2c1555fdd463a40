package session

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Manager loads and saves sessions for the requests its Middleware wraps.
// It is safe for concurrent use and immutable after New.
type Manager struct {
	cfg      config
	store    Store
	ownStore *MemoryStore // the default store, closed by Close
	codec    *cookieCodec
	policy   Policy
}

// New validates opts and returns a Manager. Every configuration error is
// reported here, so nothing fails later for a reason known now.
func New(opts Options) (*Manager, error) {
	cfg, err := opts.validate()
	if err != nil {
		return nil, err
	}
	secrets := make([][]byte, len(opts.Secrets))
	for i, s := range opts.Secrets {
		secrets[i] = slices.Clone(s)
	}
	codec, err := newCookieCodec(secrets, cfg.cookie, cfg.lifetime)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:   cfg,
		store: opts.Store,
		codec: codec,
		policy: Policy{
			IdleTimeout:        cfg.idle,
			Lifetime:           cfg.lifetime,
			TouchInterval:      cfg.touch,
			MaxSessionsPerUser: cfg.maxPerUser,
		},
	}
	if m.store == nil {
		m.ownStore = NewMemoryStore()
		m.store = m.ownStore
	}
	if cfg.observer != nil {
		m.store = observedStore{Store: m.store, o: cfg.observer}
	}
	return m, nil
}

// Close releases what New started: the default MemoryStore's janitor, if
// Options.Store was nil. A store passed in is the caller's to close.
func (m *Manager) Close() error {
	if m.ownStore != nil {
		return m.ownStore.Close()
	}
	return nil
}

// Load returns the request's session. The first call in a request decodes
// the cookie and reads the store; later calls return the same *Session. A
// missing, invalid or ended session gives a new anonymous one, never an
// error; an error means the store could not answer. Outside the
// middleware, Load returns ErrNoSession.
func (m *Manager) Load(ctx context.Context) (*Session, error) {
	st, ok := ctx.Value(stateKey).(*requestState)
	if !ok || st.m != m {
		return nil, ErrNoSession
	}
	return st.load(ctx)
}

// Sessions returns userID's live sessions, newest first.
func (m *Manager) Sessions(ctx context.Context, userID string) ([]Info, error) {
	list, err := m.store.List(ctx, userID)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(list, func(a, b Info) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(b.ID, a.ID))
	})
	return list, nil
}

// Revoke ends the session of userID whose public ID is id, on every
// instance at once. ErrNotFound if there is no such live session.
func (m *Manager) Revoke(ctx context.Context, userID, id string) error {
	if err := m.store.Revoke(ctx, userID, id); err != nil {
		return err
	}
	m.cfg.logger.LogAttrs(ctx, slog.LevelInfo, "session revoked", slog.String("user", userID), slog.String("id", id))
	return nil
}

// RevokeAll ends every session of userID, on every instance at once, and
// returns how many live ones it deleted. Sessions the store's index lost are
// ended too (they are not counted).
func (m *Manager) RevokeAll(ctx context.Context, userID string) (int, error) {
	n, err := m.store.RevokeAll(ctx, userID, Key{})
	if err != nil {
		return 0, err
	}
	m.cfg.logger.LogAttrs(ctx, slog.LevelInfo, "sessions revoked", slog.String("user", userID), slog.Int("count", n))
	return n, nil
}

// Session is one request's view of its session. Reads come from the copy
// loaded at Load; Set and Delete are saved, field by field, before the
// response's first byte. It is safe for concurrent use within the request.
type Session struct {
	st *requestState

	mu      sync.Mutex
	stored  bool   // a live session exists in the store under key
	key     Key    // names the stored session
	tok     token  // the stored session's token, for its cookie
	rec     Record // as last read from or written to the store
	values  map[string]string
	set     map[string]string   // pending writes
	del     map[string]struct{} // pending deletes
	cookie  cookieAction
	discard bool // the response is a 5xx: save nothing
}

type cookieAction int

const (
	cookieKeep  cookieAction = iota // send nothing
	cookieSet                       // send the stored session's cookie
	cookieClear                     // make the browser drop the cookie
)

func newSession(st *requestState) *Session {
	return &Session{st: st, values: map[string]string{}, set: map[string]string{}, del: map[string]struct{}{}}
}

// Get returns the value stored under key.
func (s *Session) Get(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[key]
	return v, ok
}

// Set stores value under key. It is saved before the response's first byte
// (or when the handler returns, if the session already had a cookie).
func (s *Session) Set(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.values[key]; ok && cur == value {
		return
	}
	s.values[key] = value
	s.set[key] = value
	delete(s.del, key)
}

// Delete removes key, saved like Set.
func (s *Session) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.values[key]; !ok {
		return
	}
	delete(s.values, key)
	delete(s.set, key)
	s.del[key] = struct{}{}
}

// All returns a copy of every value.
func (s *Session) All() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.values)
}

// UserID returns the logged-in user, or "" while anonymous.
func (s *Session) UserID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key.UserID
}

// ID returns the session's public handle, as listed by Manager.Sessions,
// or "" before the session is stored. It is not the token and cannot be
// turned into a cookie.
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.ID
}

// Incr adds delta to the integer under key (absent counts as 0) atomically
// in the store, so concurrent requests never lose a count, and returns the
// result. ErrNotInteger if the value is not an integer.
func (s *Session) Incr(ctx context.Context, key string, delta int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.st.m
	if !s.stored {
		n, err := addInt(s.values, key, delta)
		if err != nil {
			return 0, err
		}
		s.values[key] = fmt.Sprint(n)
		s.set[key] = s.values[key]
		delete(s.del, key)
		if err := s.createLocked(ctx); err != nil {
			return 0, err
		}
		return n, nil
	}
	_, pendingSet := s.set[key]
	_, pendingDel := s.del[key]
	if pendingSet || pendingDel {
		if err := s.updateLocked(ctx); err != nil {
			return 0, err
		}
	}
	n, err := m.store.Incr(ctx, s.key, key, delta, m.policy)
	if errors.Is(err, ErrNotFound) {
		s.ended(ctx, err)
	}
	if err != nil {
		return 0, err
	}
	s.values[key] = fmt.Sprint(n)
	s.rec.Values[key] = s.values[key]
	return n, nil
}

// Login makes the session userID's, with a new token, a new public ID and
// a new lifetime; its values are kept. The old cookie stops working at once.
// Call it after the user has authenticated.
func (s *Session) Login(ctx context.Context, userID string) error {
	if err := ValidateUserID(userID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("session: new ID: %w", err)
	}
	c := s.st.client()
	rec := Record{Info: Info{ID: id.String(), UserAgent: c.UserAgent, IP: c.IP}, Values: s.rec.Values}
	if err := s.rotateLocked(ctx, userID, rec, false); err != nil {
		return err
	}
	s.st.m.event(ctx, slog.LevelInfo, "session logged in", s.tok, userID, nil)
	return nil
}

// Renew gives the session a new token, keeping its user, values, ID and
// lifetime. Call it when the session's privileges change. A session that
// is not stored yet has no token to replace, so Renew does nothing.
func (s *Session) Renew(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stored {
		return nil
	}
	rec := s.rec
	c := s.st.client()
	rec.UserAgent, rec.IP = c.UserAgent, c.IP
	if err := s.rotateLocked(ctx, s.key.UserID, rec, true); err != nil {
		return err
	}
	s.st.m.event(ctx, slog.LevelInfo, "session renewed", s.tok, s.key.UserID, nil)
	return nil
}

func (s *Session) rotateLocked(ctx context.Context, userID string, rec Record, renew bool) error {
	if s.st.headersSent.Load() {
		return ErrHeadersWritten
	}
	m := s.st.m
	tok, err := newToken()
	if err != nil {
		return err
	}
	rot := Rotation{To: Key{UserID: userID, Hash: tok.hash()}, Record: rec, Change: s.change(), Renew: renew}
	if s.stored {
		rot.From = s.key
	}
	out, err := m.store.Rotate(ctx, rot, m.policy)
	if errors.Is(err, ErrNotFound) && renew {
		s.ended(ctx, err)
	}
	if err != nil {
		return err
	}
	s.became(rot.To, tok, out)
	return nil
}

// Logout deletes the session on every instance at once and makes the
// browser drop the cookie. Values set afterwards start a new anonymous session.
func (s *Session) Logout(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.headersSent.Load() {
		return ErrHeadersWritten
	}
	if s.stored {
		if err := s.st.m.store.Delete(ctx, s.key); err != nil {
			return err
		}
		s.st.m.event(ctx, slog.LevelInfo, "session logged out", s.tok, s.key.UserID, nil)
	}
	s.reset()
	s.cookie = cookieClear
	return nil
}

// LogoutOthers ends every other session of this session's user, on every
// instance at once, and returns how many it ended. It keeps this one. An
// anonymous session has no others: 0, nil.
func (s *Session) LogoutOthers(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stored || s.key.UserID == "" {
		return 0, nil
	}
	m := s.st.m
	n, err := m.store.RevokeAll(ctx, s.key.UserID, s.key)
	if err != nil {
		return 0, err
	}
	m.event(ctx, slog.LevelInfo, "other sessions logged out", s.tok, s.key.UserID, nil, slog.Int("count", n))
	return n, nil
}

// change returns the pending writes as a Change.
func (s *Session) change() Change {
	c := Change{Set: maps.Clone(s.set)}
	for k := range s.del {
		c.Delete = append(c.Delete, k)
	}
	return c
}

func (s *Session) clearPending() {
	clear(s.set)
	clear(s.del)
}

// became records that the session is now stored as rec under k.
func (s *Session) became(k Key, tok token, rec Record) {
	s.stored, s.key, s.tok, s.rec = true, k, tok, rec
	s.values = maps.Clone(rec.Values)
	s.clearPending()
	s.cookie = cookieSet
}

// reset makes the session a new, unstored, anonymous one.
func (s *Session) reset() {
	s.stored, s.key, s.tok, s.rec = false, Key{}, token{}, Record{}
	s.values = map[string]string{}
	s.clearPending()
}

// ended handles a session that the store says no longer exists (revoked or
// expired during the request): it is not brought back; the browser is told
// to drop the cookie.
func (s *Session) ended(ctx context.Context, why error) {
	s.st.m.notify(EventWriteRefused, why)
	s.st.m.event(ctx, slog.LevelWarn, "session write refused: it ended during the request", s.tok, s.key.UserID, why)
	s.reset()
	s.cookie = cookieClear
}

// createLocked stores a new anonymous session holding the current values.
func (s *Session) createLocked(ctx context.Context) error {
	if s.st.headersSent.Load() {
		return ErrHeadersWritten
	}
	m := s.st.m
	tok, err := newToken()
	if err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("session: new ID: %w", err)
	}
	c := s.st.client()
	k := Key{Hash: tok.hash()}
	rec, err := m.store.Create(ctx, k, Record{Info: Info{ID: id.String(), UserAgent: c.UserAgent, IP: c.IP}, Values: s.values}, m.policy)
	if err != nil {
		return err
	}
	s.became(k, tok, rec)
	m.event(ctx, slog.LevelDebug, "session created", tok, "", nil)
	return nil
}

// updateLocked saves the pending writes of a stored session.
func (s *Session) updateLocked(ctx context.Context) error {
	c := s.change()
	m := s.st.m
	err := m.store.Update(ctx, s.key, c, m.policy)
	if errors.Is(err, ErrNotFound) {
		s.ended(ctx, err)
		return nil
	}
	if err != nil {
		return err
	}
	s.rec.Values = c.apply(s.rec.Values)
	s.clearPending()
	return nil
}

// save writes what the request changed. With h it may also set the cookie
// (before the headers go out); without, only a stored session's values can
// be saved, and anything needing a cookie is reported as ErrHeadersWritten.
func (s *Session) save(ctx context.Context, h http.Header) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h != nil {
		// Whatever happens here, the headers go out next: from now on
		// nothing may need a new cookie.
		defer s.st.headersSent.Store(true)
	}
	if s.discard {
		return nil
	}
	switch {
	case len(s.set) == 0 && len(s.del) == 0:
	case s.stored:
		if err := s.updateLocked(ctx); err != nil {
			return err
		}
	case len(s.values) == 0:
		s.clearPending() // set, then deleted again: nothing to keep
	case h == nil:
		s.clearPending()
		return fmt.Errorf("%w: a new session's values were set after the response started and are not saved", ErrHeadersWritten)
	default:
		if err := s.createLocked(ctx); err != nil {
			return err
		}
	}
	if h == nil {
		return nil
	}
	return s.writeCookie(h)
}

func (s *Session) writeCookie(h http.Header) error {
	m := s.st.m
	var c *http.Cookie
	switch s.cookie {
	case cookieKeep:
		return nil
	case cookieSet:
		v, err := m.codec.encode(s.key.UserID, s.tok)
		if err != nil {
			return err
		}
		c = m.codec.cookie(v, s.rec.Expires, time.Now())
	case cookieClear:
		c = m.codec.expired()
	}
	s.cookie = cookieKeep
	h.Add("Set-Cookie", c.String())
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Cookie")
	return nil
}

// securityEvent logs a cookie that did not open. The value may be a real
// cookie with a flipped bit, so it appears only as a keyed hash.
func (m *Manager) securityEvent(ctx context.Context, kind EventKind, msg, cookieValue string, err error) {
	m.notify(kind, err)
	m.cfg.logger.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("cookie_hash", m.codec.logHash([]byte(cookieValue))), slog.String("reason", err.Error()))
}

// event logs a lifecycle or security event. The token appears only as a
// keyed hash.
func (m *Manager) event(ctx context.Context, level slog.Level, msg string, tok token, userID string, err error, attrs ...slog.Attr) {
	if !m.cfg.logger.Enabled(ctx, level) {
		return
	}
	attrs = append(attrs, slog.String("token_hash", m.codec.logHash(tok[:])))
	if userID != "" {
		attrs = append(attrs, slog.String("user", userID))
	}
	if err != nil {
		attrs = append(attrs, slog.String("reason", err.Error()))
	}
	m.cfg.logger.LogAttrs(ctx, level, msg, attrs...)
}
