package session

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
)

// contextKey is unexported and a pointer, so no other package can collide
// with it; each Manager has its own, so nested Managers do not collide either.
type contextKey struct{ name string }

// requestState is what the middleware keeps for one request. The session
// is loaded on the first Manager.Load, so a request that never asks costs
// no cookie decoding and no store call. It is also the request's context
// (the original one plus itself under the Manager's key) and holds the
// response writer, so that the middleware costs one allocation besides the
// request's WithContext.
type requestState struct {
	context.Context // the request's original context
	m               *Manager
	r               *http.Request
	w               commitWriter

	mu      sync.Mutex
	sess    *Session
	started bool // the response has started: a session loaded now can set no cookie
}

// Value finds the state itself under its Manager's key, as
// context.WithValue would.
func (st *requestState) Value(key any) any {
	if key == st.m.ctxKey {
		return st
	}
	return st.Context.Value(key)
}

// Middleware loads sessions lazily for next and saves what changed as the
// response starts. A handler that panics or answers 5xx saves nothing. If
// saving fails, Options.ErrorHandler answers instead, and nothing more is
// saved for that request.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &requestState{Context: r.Context(), m: m}
		r = r.WithContext(st)
		st.r = r
		st.w = commitWriter{ResponseWriter: w, st: st}
		next.ServeHTTP(&st.w, r)
		// Reached only if next did not panic.
		if !st.w.wroteHeader && st.w.commit(http.StatusOK) {
			return // ErrorHandler has answered
		}
		st.finish()
	})
}

func (st *requestState) load(ctx context.Context) (*Session, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sess != nil {
		return st.sess, nil
	}
	s, err := st.m.loadFromCookie(ctx, st.r)
	if err != nil {
		return nil, err
	}
	if st.started {
		s.phase = phaseStarted
	}
	st.sess = s
	return s, nil
}

// start marks the response as started and returns the session, if one was loaded.
func (st *requestState) start() *Session {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.started = true
	return st.sess
}

// saveContext is the request's context without its cancellation: a save
// that has begun finishes even if the client goes away.
func (st *requestState) saveContext() context.Context {
	return context.WithoutCancel(st.Context)
}

// finish saves, after the handler has returned, what can still be saved.
func (st *requestState) finish() {
	s := st.start()
	if s == nil {
		return
	}
	if err := s.finish(st.saveContext); err != nil {
		st.m.cfg.logger.ErrorContext(st.r.Context(), "session: change not saved", "error", err, "path", st.r.URL.Path)
	}
}

// commitWriter saves the session before the first byte of the response,
// while the cookie can still be set. It passes Flush, Hijack, ReadFrom and
// http.ResponseController (through Unwrap) on to the writer it wraps.
type commitWriter struct {
	http.ResponseWriter
	st          *requestState
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
	s := w.st.start()
	if s == nil {
		return false
	}
	h := w.Header()
	if code == http.StatusSwitchingProtocols {
		h = nil // a hijacked connection sends no Set-Cookie
	}
	if err := s.commit(w.st.saveContext, code, h); err != nil {
		w.failed = true
		w.st.m.cfg.errorHandler(w.ResponseWriter, w.st.r, err)
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
