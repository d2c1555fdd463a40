package session

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
)

// Manager loads and saves sessions for the requests its Middleware wraps.
// It is safe for concurrent use and immutable after New. The zero Manager
// is not usable: make one with New.
type Manager struct {
	cfg      config
	env      *sessionEnv
	ownStore *MemoryStore // the default store, closed by Close
	ctxKey   *contextKey  // this Manager's own: nested Managers each find their session
}

// sessionEnv is what a Session needs from its Manager, fixed at New. A
// Session uses it and nothing else, so data flows one way: middleware,
// then session, then store.
type sessionEnv struct {
	store  Store
	policy Policy
	codec  *cookieCodec
	events *eventLog
	bearer bool // the token travels in headers, not in a cookie
	// remember is the policy of a session logged in with Remember.
	remember Policy
}

// New validates opts and returns a Manager. Every configuration error is
// reported here, in a fixed order, so nothing fails later for a reason
// known now.
func New(opts Options) (*Manager, error) {
	cfg, err := opts.validate()
	if err != nil {
		return nil, err
	}
	secrets := make([][]byte, len(opts.Secrets))
	for i, s := range opts.Secrets {
		secrets[i] = slices.Clone(s)
	}
	codec, err := newCookieCodec(secrets, cfg.cookie, max(cfg.lifetime, cfg.rememberLifetime))
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, ctxKey: &contextKey{"session"}}
	store := opts.Store
	if store == nil {
		m.ownStore = NewMemoryStore()
		store = m.ownStore
	}
	if cfg.observer != nil {
		store = observedStore{Store: store, o: cfg.observer}
	}
	m.env = &sessionEnv{
		store: store,
		policy: Policy{
			IdleTimeout:        cfg.idle,
			Lifetime:           cfg.lifetime,
			TouchInterval:      cfg.touch,
			MaxSessionsPerUser: cfg.maxPerUser,
		},
		codec:  codec,
		events: &eventLog{logger: cfg.logger, observer: cfg.observer, hash: codec.logHash},
		bearer: cfg.bearer,
	}
	m.env.remember = m.env.policy
	m.env.remember.Lifetime, m.env.remember.IdleTimeout = cfg.rememberLifetime, cfg.rememberIdle
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
// error; an error means the store could not answer. Outside this Manager's
// middleware, Load returns ErrNoSession.
func (m *Manager) Load(ctx context.Context) (*Session, error) {
	st, ok := ctx.Value(m.ctxKey).(*requestState)
	if !ok {
		return nil, ErrNoSession
	}
	return st.load(ctx)
}

// Sessions returns userID's live sessions, newest first.
func (m *Manager) Sessions(ctx context.Context, userID string) ([]Info, error) {
	list, err := m.env.store.List(ctx, userID)
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
	if err := m.env.store.Revoke(ctx, userID, id); err != nil {
		return err
	}
	m.cfg.logger.LogAttrs(ctx, slog.LevelInfo, "session revoked", slog.String("user", userID), slog.String("id", id))
	return nil
}

// RevokeAll ends every session of userID, on every instance at once, and
// returns how many live ones it deleted. Sessions the store's index lost are
// ended too (they are not counted).
func (m *Manager) RevokeAll(ctx context.Context, userID string) (int, error) {
	n, err := m.env.store.RevokeAll(ctx, userID, Key{})
	if err != nil {
		return 0, err
	}
	m.cfg.logger.LogAttrs(ctx, slog.LevelInfo, "sessions revoked", slog.String("user", userID), slog.Int("count", n))
	return n, nil
}

// maxClientField bounds the user agent and IP kept with a session, so a
// huge header cannot grow the store.
const maxClientField = 512

// client is what r tells the store about the device using a session.
func (m *Manager) client(r *http.Request) Client {
	truncate := func(s string) string {
		if len(s) > maxClientField {
			return s[:maxClientField]
		}
		return s
	}
	return Client{UserAgent: truncate(r.UserAgent()), IP: truncate(m.cfg.clientIP(r))}
}

// loadFromCookie turns the request's cookie into a Session. Every failure
// short of a store error is an anonymous session and a log line; a cookie
// whose MAC fails costs no store call.
func (m *Manager) loadFromCookie(ctx context.Context, r *http.Request) (*Session, error) {
	env := m.env
	s := newSession(env, m.client(r))
	value, n := presentedToken(r, env)
	switch n {
	case 0:
		return s, nil
	case 1:
	default:
		// Two tokens: one may be planted (cookie tossing). Trusting either
		// would let an attacker choose.
		env.events.cookieRejected(ctx, EventCookieAmbiguous, "session cookie ambiguous", value, errors.New("more than one session token in the request"))
		s.cookie = cookieClear
		return s, nil
	}
	c, err := env.codec.decode(value)
	if err != nil {
		env.events.cookieRejected(ctx, EventCookieRejected, "session cookie rejected", value, err)
		s.cookie = cookieClear
		return s, nil
	}
	userID, tok := c.userID, c.tok
	k := Key{UserID: userID, Hash: c.hash}
	rec, err := env.store.Load(ctx, k, s.client, env.policy)
	if errors.Is(err, ErrNotFound) {
		// Signed by us, but not live. Its token is not adopted; a new
		// session gets a fresh one. Ending is ordinary (the user came back
		// after the idle timeout); a record that does not match is not.
		if errors.Is(err, ErrInconsistent) {
			env.events.notify(EventTokenUnknown, err)
			env.events.session(ctx, slog.LevelWarn, "session token does not match its stored session", tok, userID, err)
		} else {
			env.events.notify(EventSessionEnded, err)
			env.events.session(ctx, slog.LevelInfo, "session ended", tok, userID, err)
		}
		s.cookie = cookieClear
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	s.loaded(k, tok, rec)
	if c.stale {
		s.cookie = cookieSet // re-issue under the newest secret
	}
	return s, nil
}

// presentedToken returns the first token value r presents, and how many
// it presents: its cookies of the session's name, or with Options.Bearer
// its Authorization headers of the Bearer scheme (other schemes are
// someone else's).
func presentedToken(r *http.Request, env *sessionEnv) (first string, n int) {
	if !env.bearer {
		return namedCookie(r.Header, env.codec.name)
	}
	for _, v := range r.Header.Values("Authorization") {
		scheme, token, _ := strings.Cut(v, " ")
		if strings.EqualFold(scheme, "Bearer") {
			if n == 0 {
				first = strings.TrimSpace(token)
			}
			n++
		}
	}
	return first, n
}
