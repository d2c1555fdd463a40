package session

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// contextKey is unexported and a pointer, so no other package can collide with it.
type contextKey struct{ name string }

var stateKey = &contextKey{"session"}

// requestState is what the middleware keeps for one request. The session
// is loaded on the first Manager.Load, so a request that never asks costs
// no cookie decoding and no store call. It is also the request's context
// (the original one plus itself under stateKey) and holds the response
// writer, so that the middleware costs one allocation besides the
// request's WithContext: a request that never loads its session should
// cost next to nothing.
type requestState struct {
	context.Context // the request's original context
	m               *Manager
	r               *http.Request
	mu              sync.Mutex
	sess            *Session
	headersSent     atomic.Bool // the cookie can no longer be changed
	w               commitWriter
}

// Value finds the state itself under stateKey, as context.WithValue would.
func (st *requestState) Value(key any) any {
	if key == stateKey {
		return st
	}
	return st.Context.Value(key)
}

// Middleware loads sessions lazily for next and saves what changed before
// the response's first byte. A handler that panics or answers 5xx saves
// nothing. If saving fails, Options.ErrorHandler answers instead.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &requestState{Context: r.Context(), m: m, r: r}
		r = r.WithContext(st)
		st.w = commitWriter{ResponseWriter: w, st: st, r: r}
		cw := &st.w
		next.ServeHTTP(cw, r)
		// Reached only if next did not panic.
		if !cw.wroteHeader {
			if cw.commit(http.StatusOK) {
				return // ErrorHandler has answered
			}
		}
		// Values of a stored session changed after the headers went out can
		// still be saved: they need no new cookie.
		st.saveLate()
	})
}

func (st *requestState) load(ctx context.Context) (*Session, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sess != nil {
		return st.sess, nil
	}
	s, err := st.m.loadFromCookie(ctx, st)
	if err != nil {
		return nil, err
	}
	st.sess = s
	return s, nil
}

func (st *requestState) session() *Session {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sess
}

// maxClientField bounds the user agent and IP kept with a session, so a
// huge header cannot grow the store.
const maxClientField = 512

func (st *requestState) client() Client {
	truncate := func(s string) string {
		if len(s) > maxClientField {
			return s[:maxClientField]
		}
		return s
	}
	return Client{UserAgent: truncate(st.r.UserAgent()), IP: truncate(st.m.cfg.clientIP(st.r))}
}

// loadFromCookie turns the request's cookie into a Session. Every failure
// short of a store error is an anonymous session and a log line; a cookie
// whose MAC fails costs no store call.
func (m *Manager) loadFromCookie(ctx context.Context, st *requestState) (*Session, error) {
	s := newSession(st)
	cookies := st.r.CookiesNamed(m.codec.name)
	switch len(cookies) {
	case 0:
		return s, nil
	case 1:
	default:
		// Two cookies of one name: one may be planted (cookie tossing).
		// Trusting either would let an attacker choose.
		m.securityEvent(ctx, EventCookieAmbiguous, "session cookie ambiguous", cookies[0].Value, errors.New("more than one cookie with the session's name"))
		s.cookie = cookieClear
		return s, nil
	}
	userID, tok, stale, err := m.codec.decode(cookies[0].Value)
	if err != nil {
		m.securityEvent(ctx, EventCookieRejected, "session cookie rejected", cookies[0].Value, err)
		s.cookie = cookieClear
		return s, nil
	}
	k := Key{UserID: userID, Hash: tok.hash()}
	rec, err := m.store.Load(ctx, k, st.client(), m.policy)
	if errors.Is(err, ErrNotFound) {
		// Signed by us, but not live: expired, revoked, or never issued. Its
		// token is not adopted; a new session gets a fresh one.
		m.notify(EventTokenUnknown, err)
		m.event(ctx, slog.LevelWarn, "session token unknown or ended", tok, userID, err)
		s.cookie = cookieClear
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	s.stored, s.key, s.tok, s.rec = true, k, tok, rec
	s.values = copyValues(rec.Values)
	if stale {
		s.cookie = cookieSet // re-issue under the newest secret
	}
	return s, nil
}

// saveLate saves, after the response has started, what can still be saved.
func (st *requestState) saveLate() {
	s := st.session()
	if s == nil {
		return
	}
	if err := s.save(context.WithoutCancel(st.r.Context()), nil); err != nil {
		st.m.cfg.logger.ErrorContext(st.r.Context(), "session: change not saved", "error", err, "path", st.r.URL.Path)
	}
}

// commitWriter saves the session before the first byte of the response,
// while the cookie can still be set. It passes Flush, Hijack, ReadFrom and
// http.ResponseController (through Unwrap) on to the writer it wraps.
type commitWriter struct {
	http.ResponseWriter
	st          *requestState
	r           *http.Request
	wroteHeader bool
	failed      bool // saving failed and ErrorHandler answered
}

// errResponseReplaced is what the handler's writes return once
// ErrorHandler has answered in its place.
var errResponseReplaced = errors.New("session: response replaced by ErrorHandler after the session could not be saved")

// commit saves the session for a response with status code and reports
// whether saving failed (and ErrorHandler has answered).
func (w *commitWriter) commit(code int) (failed bool) {
	w.wroteHeader = true
	s := w.st.session()
	if s == nil {
		w.st.headersSent.Store(true)
		return false
	}
	if code >= 500 {
		s.mu.Lock()
		s.discard = true
		w.st.headersSent.Store(true)
		s.mu.Unlock()
		return false
	}
	if err := s.save(context.WithoutCancel(w.r.Context()), w.Header()); err != nil {
		w.failed = true
		w.st.m.cfg.errorHandler(w.ResponseWriter, w.r, err)
		return true
	}
	return false
}

func (w *commitWriter) WriteHeader(code int) {
	if w.failed {
		return
	}
	if w.wroteHeader || (code >= 100 && code < 200 && code != http.StatusSwitchingProtocols) {
		w.ResponseWriter.WriteHeader(code) // informational, or net/http's own "superfluous" warning
		return
	}
	if w.commit(code) {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *commitWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return 0, errResponseReplaced
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps io.Copy's fast path (sendfile) of the wrapped writer.
func (w *commitWriter) ReadFrom(src io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return 0, errResponseReplaced
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{w.ResponseWriter}, src)
}

// writerOnly hides ReadFrom so io.Copy cannot loop back into it.
type writerOnly struct{ io.Writer }

func (w *commitWriter) Flush() {
	_ = w.FlushError()
}

// FlushError is what http.ResponseController calls: flushing sends the
// headers, so the session is saved first.
func (w *commitWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return errResponseReplaced
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack saves the session (its store side: a hijacked connection sends no
// Set-Cookie) and hands over the connection.
func (w *commitWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.wroteHeader {
		if w.commit(http.StatusSwitchingProtocols) {
			return nil, nil, errResponseReplaced
		}
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the wrapped writer.
func (w *commitWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
