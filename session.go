package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Session is one request's view of its session. Reads come from the copy
// loaded at Load. Set, Delete, Login and Renew take effect when the response
// starts (its first byte, a flush, or the handler's return): the values are
// saved field by field and the cookie is set then, so a handler that panics
// or answers 5xx changes nothing in the store. Incr, Logout and
// LogoutOthers act on the store at once. A Session is safe for concurrent
// use within its request. The zero Session is not usable: Manager.Load
// returns them.
type Session struct {
	env    *sessionEnv
	client Client

	mu      sync.Mutex
	phase   phase
	stored  bool                // a live session exists in the store under key
	key     Key                 // names the stored session
	tok     token               // the stored session's token, for its cookie
	rec     Record              // as last read from or written to the store
	values  map[string]string   // nil, or rec.Values itself, until the first change (own)
	shared  bool                // values is rec.Values
	set     map[string]string   // pending writes
	del     map[string]struct{} // pending deletes
	pending *pendingRotation    // a Login or Renew, carried out at commit
	cookie  cookieAction
}

// phase is where the session's request stands in its response.
type phase int

const (
	phaseOpen    phase = iota // before the headers: anything may change
	phaseStarted              // headers sent: only a stored session's values can still be saved
	phaseClosed               // nothing more is saved: a 5xx, or a save answered by ErrorHandler
)

// pendingRotation is a Login or Renew waiting for the response to start.
type pendingRotation struct {
	userID   string
	id       string // the new public ID (Login)
	renew    bool
	remember bool // LoginOptions.Remember
}

type cookieAction int

const (
	cookieKeep  cookieAction = iota // send nothing
	cookieSet                       // send the stored session's cookie
	cookieClear                     // make the browser drop the cookie
)

func newSession(env *sessionEnv, c Client) *Session {
	return &Session{env: env, client: c} // values: made at the first change (own)
}

// pendSet and pendDelete queue a change for commit. The queues are made
// at the first change: most requests only read.
func (s *Session) pendSet(key, value string) {
	if s.set == nil {
		s.set = map[string]string{}
	}
	s.set[key] = value
}

func (s *Session) pendDelete(key string) {
	if s.del == nil {
		s.del = map[string]struct{}{}
	}
	s.del[key] = struct{}{}
}

// loaded makes s the view of the stored session rec, named k.
func (s *Session) loaded(k Key, tok token, rec Record) {
	s.stored, s.key, s.tok, s.rec = true, k, tok, rec
	s.values, s.shared = rec.Values, true
}

// own gives s a values map of its own before a change: most requests only
// read, and need no copy of what the store returned, nor a map at all.
func (s *Session) own() {
	if s.shared {
		s.values, s.shared = maps.Clone(s.values), false
	}
	if s.values == nil {
		s.values = map[string]string{}
	}
}

// Get returns the value stored under key.
func (s *Session) Get(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[key]
	return v, ok
}

// Set stores value under key. It is saved when the response starts (or
// when the handler returns, if the session already had a cookie).
func (s *Session) Set(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.values[key]; ok && cur == value {
		return
	}
	s.own()
	s.values[key] = value
	s.pendSet(key, value)
	delete(s.del, key)
}

// Delete removes key, saved like Set.
func (s *Session) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.values[key]; !ok {
		return
	}
	s.own()
	delete(s.values, key)
	delete(s.set, key)
	s.pendDelete(key)
}

// All returns a copy of every value.
func (s *Session) All() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.values)) // never nil, unlike a clone of none
	maps.Copy(out, s.values)
	return out
}

// UserID returns the logged-in user, or "" while anonymous. After Login it
// is the new user, although the store learns of it when the response starts.
func (s *Session) UserID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != nil {
		return s.pending.userID
	}
	return s.key.UserID
}

// ID returns the session's public handle, as listed by Manager.Sessions,
// or "" before the session is stored. After Login it is the new session's.
// It is not the token and cannot be turned into a cookie.
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != nil && !s.pending.renew {
		return s.pending.id
	}
	return s.rec.ID
}

// Incr adds delta to the integer under key (absent counts as 0) atomically
// in the store, so concurrent requests never lose a count, and returns the
// result. ErrNotInteger if the value is not an integer. A session not yet
// stored is created by it, unless a Login is pending, which then carries
// the count.
func (s *Session) Incr(ctx context.Context, key string, delta int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stored {
		n, err := addInt(s.values, key, delta)
		if err != nil {
			return 0, err
		}
		s.own()
		s.values[key] = fmt.Sprint(n)
		s.pendSet(key, s.values[key])
		delete(s.del, key)
		if s.pending != nil {
			return n, nil // the login creates the session with it
		}
		if s.phase != phaseOpen {
			return 0, ErrHeadersWritten
		}
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
		if !s.stored {
			return 0, ErrNotFound // it ended during the request
		}
	}
	env := s.env
	n, err := env.store.Incr(ctx, s.key, key, delta, env.policy)
	if errors.Is(err, ErrNotFound) {
		s.ended(ctx, err)
	}
	if err != nil {
		return 0, err
	}
	s.own()
	s.values[key] = fmt.Sprint(n)
	if s.rec.Values == nil {
		s.rec.Values = map[string]string{}
	}
	s.rec.Values[key] = s.values[key]
	return n, nil
}

// Login makes the session userID's, with a new token, a new public ID and
// a new lifetime; its values are kept. It takes effect when the response
// starts: the store rotates the session then and the response carries the
// new cookie, and the old cookie stops working. If the store refuses,
// Options.ErrorHandler answers instead, so a client is never told it is
// logged in when it is not; if the handler panics or answers 5xx, nothing
// changes. Call it after the user has authenticated.
func (s *Session) Login(ctx context.Context, userID string) error {
	return s.LoginWith(ctx, userID, LoginOptions{})
}

// LoginOptions are the choices an application makes at one login.
// The zero value is an ordinary login.
type LoginOptions struct {
	// Remember is a "remember me" login: the session lives for
	// Options.RememberLifetime (idle: RememberIdleTimeout) and its cookie
	// outlives the browser, whatever CookieOptions.SessionOnly says. The
	// choice survives Renew and shows in Info.Remembered.
	Remember bool
}

// LoginWith is Login with choices: see LoginOptions.
func (s *Session) LoginWith(ctx context.Context, userID string, o LoginOptions) error {
	if err := ValidateUserID(userID); err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("session: new ID: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != phaseOpen {
		return ErrHeadersWritten
	}
	s.pending = &pendingRotation{userID: userID, id: id.String(), remember: o.Remember}
	return nil
}

// Renew gives the session a new token, keeping its user, values, ID and
// lifetime. Call it when the session's privileges change. Like Login, it
// takes effect when the response starts. A session that is not stored yet
// has no token to replace, so Renew does nothing; after Login it has
// nothing to add.
func (s *Session) Renew(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != phaseOpen {
		return ErrHeadersWritten
	}
	if !s.stored || s.pending != nil {
		return nil
	}
	s.pending = &pendingRotation{userID: s.key.UserID, renew: true}
	return nil
}

// Logout deletes the session on every instance at once and makes the
// browser drop the cookie; a pending Login or Renew is dropped. Values set
// afterwards start a new anonymous session. The deletion stands even if
// the response then fails.
func (s *Session) Logout(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != phaseOpen {
		return ErrHeadersWritten
	}
	if s.stored {
		if err := s.env.store.Delete(ctx, s.key); err != nil {
			return err
		}
		s.env.events.session(ctx, slog.LevelInfo, "session logged out", s.tok, s.key.UserID, nil)
	}
	s.reset()
	s.cookie = cookieClear
	return nil
}

// LogoutOthers ends every other session of this session's user, on every
// instance at once, and returns how many it ended. It keeps this one. An
// anonymous session has no others: 0, nil. After Login, it ends every
// session the user had before.
func (s *Session) LogoutOthers(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	userID, keep := s.key.UserID, s.key
	if !s.stored {
		keep = Key{}
	}
	if p := s.pending; p != nil && !p.renew {
		userID, keep = p.userID, Key{} // the new session does not exist yet
	}
	if userID == "" {
		return 0, nil
	}
	env := s.env
	n, err := env.store.RevokeAll(ctx, userID, keep)
	if err != nil {
		return 0, err
	}
	env.events.session(ctx, slog.LevelInfo, "other sessions logged out", s.tok, userID, nil, slog.Int("count", n))
	return n, nil
}

// commit saves what the request changed as its response starts with
// status, and writes the cookie headers into h. A nil h means no header
// can be sent (a hijacked connection): what needs a cookie is not done. A
// 5xx saves nothing; the cookie still follows what already happened in
// the store (a Logout). After a failed commit nothing more is saved. ctx
// is called only for a save: most requests save nothing.
func (s *Session) commit(ctx func() context.Context, status int, h http.Header) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != phaseOpen {
		return nil
	}
	if h != nil {
		varyCookie(h, s.env.bearer)
	}
	if status >= 500 {
		s.phase = phaseClosed
		s.pending = nil
		s.clearPending()
		return s.writeCookie(h)
	}
	s.phase = phaseStarted
	err := s.saveLocked(ctx, h != nil)
	if err == nil {
		err = s.writeCookie(h)
	}
	if err != nil {
		s.phase = phaseClosed
	}
	return err
}

// finish saves, after the handler has returned, the values changed after
// the response started: they need no new cookie.
func (s *Session) finish(ctx func() context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != phaseStarted {
		return nil
	}
	s.phase = phaseClosed
	return s.saveLocked(ctx, false)
}

// saveLocked carries out what is pending. Without canSetCookie, only a
// stored session's values can be saved.
func (s *Session) saveLocked(ctx func() context.Context, canSetCookie bool) error {
	if p := s.pending; p != nil {
		s.pending = nil
		if !canSetCookie {
			s.clearPending()
			return fmt.Errorf("%w: a Login or Renew needs a cookie, and none can be sent", ErrHeadersWritten)
		}
		return s.rotateLocked(ctx(), p)
	}
	switch {
	case len(s.set) == 0 && len(s.del) == 0:
		return nil
	case s.stored:
		return s.updateLocked(ctx())
	case len(s.values) == 0:
		s.clearPending() // set, then deleted again: nothing to keep
		return nil
	case !canSetCookie:
		s.clearPending()
		return fmt.Errorf("%w: a new session's values were set after the response started and are not saved", ErrHeadersWritten)
	}
	return s.createLocked(ctx())
}

// writeCookie adds the Set-Cookie the session's state calls for, if any.
func (s *Session) writeCookie(h http.Header) error {
	if h == nil || s.cookie == cookieKeep {
		return nil
	}
	codec := s.env.codec
	v := ""
	if s.cookie == cookieSet {
		var err error
		if v, err = codec.encode(s.key.UserID, s.tok); err != nil {
			return err
		}
	}
	s.cookie = cookieKeep
	if s.env.bearer {
		h.Set(TokenHeader, v)
		h.Set("Cache-Control", "no-store")
		return nil
	}
	c := codec.expired()
	if v != "" {
		c = codec.cookie(v, s.rec.Expires, time.Now(), s.rec.Remembered)
	}
	setCookieHeaders(h, c)
	return nil
}

// rotateLocked carries out a Login or Renew.
func (s *Session) rotateLocked(ctx context.Context, p *pendingRotation) error {
	env := s.env
	tok, err := newToken()
	if err != nil {
		return err
	}
	rec := Record{Info: Info{ID: p.id, Remembered: p.remember}, Values: s.rec.Values}
	if p.renew {
		rec = s.rec
	}
	rec.UserAgent, rec.IP = s.client.UserAgent, s.client.IP
	policy := env.policy
	if rec.Remembered {
		policy = env.remember
	}
	rot := Rotation{To: Key{UserID: p.userID, Hash: tok.hash()}, Record: rec, Change: s.change(), Renew: p.renew}
	if s.stored {
		rot.From = s.key
	}
	out, err := env.store.Rotate(ctx, rot, policy)
	if errors.Is(err, ErrNotFound) && p.renew {
		s.ended(ctx, err)
		return nil
	}
	if err != nil {
		return err
	}
	s.became(rot.To, tok, out)
	msg := "session logged in"
	if p.renew {
		msg = "session renewed"
	}
	env.events.session(ctx, slog.LevelInfo, msg, tok, p.userID, nil)
	return nil
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
	s.loaded(k, tok, rec)
	s.clearPending()
	s.cookie = cookieSet
}

// reset makes the session a new, unstored, anonymous one.
func (s *Session) reset() {
	s.stored, s.key, s.tok, s.rec = false, Key{}, token{}, Record{}
	s.values, s.shared = nil, false
	s.pending = nil
	s.clearPending()
}

// ended handles a session that the store says no longer exists (revoked or
// expired during the request): it is not brought back; the browser is told
// to drop the cookie.
func (s *Session) ended(ctx context.Context, why error) {
	s.env.events.notify(EventWriteRefused, why)
	s.env.events.session(ctx, slog.LevelWarn, "session write refused: it ended during the request", s.tok, s.key.UserID, why)
	s.reset()
	s.cookie = cookieClear
}

// createLocked stores a new anonymous session holding the current values.
func (s *Session) createLocked(ctx context.Context) error {
	env := s.env
	tok, err := newToken()
	if err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("session: new ID: %w", err)
	}
	k := Key{Hash: tok.hash()}
	rec, err := env.store.Create(ctx, k, Record{Info: Info{ID: id.String(), UserAgent: s.client.UserAgent, IP: s.client.IP}, Values: s.values}, env.policy)
	if err != nil {
		return err
	}
	s.became(k, tok, rec)
	env.events.session(ctx, slog.LevelDebug, "session created", tok, "", nil)
	return nil
}

// updateLocked saves the pending writes of a stored session.
func (s *Session) updateLocked(ctx context.Context) error {
	c := s.change()
	env := s.env
	err := env.store.Update(ctx, s.key, c, env.policy)
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
