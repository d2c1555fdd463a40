package session

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Defaults for the zero values of Options and CookieOptions.
const (
	DefaultCookieName         = "__Host-session"
	DefaultInsecureCookieName = "session"
	DefaultIdleTimeout        = 30 * time.Minute
	DefaultLifetime           = 12 * time.Hour
	DefaultTouchInterval      = time.Minute
	DefaultRememberLifetime   = 30 * 24 * time.Hour

	// MinSecretLength is the shortest secret New accepts: 256 bits.
	MinSecretLength = 32
	// MaxUserIDLength bounds a user ID in bytes, so that it fits in the cookie
	// (which carries it, encrypted) and in a Redis key.
	MaxUserIDLength = 512
)

// Options configures a Manager. The zero value of every field means its
// default; New copies what it needs, so changing Options after New has no effect.
type Options struct {
	// Store keeps the sessions. Default: NewMemoryStore(), closed by Manager.Close.
	Store Store
	// Secrets sign and encrypt cookies, newest first, each at least
	// MinSecretLength bytes. The newest encodes; all decode, and a cookie read
	// with an older secret is re-issued with the newest. Required.
	Secrets [][]byte
	// Cookie sets the session cookie's attributes.
	Cookie CookieOptions
	// IdleTimeout ends a session that has not been used for this long. Default 30m.
	IdleTimeout time.Duration
	// Lifetime ends a session this long after it was created or logged in,
	// however active it is. Default 12h.
	Lifetime time.Duration
	// RememberLifetime is the absolute lifetime of a session logged in with
	// LoginOptions{Remember: true} (a "remember me" checkbox), whose cookie
	// also outlives the browser whatever Cookie.SessionOnly says. Default 30
	// days. It may be shorter than Lifetime.
	RememberLifetime time.Duration
	// RememberIdleTimeout ends a remembered session not used for this long.
	// Default: RememberLifetime (only the absolute end applies).
	RememberIdleTimeout time.Duration
	// TouchInterval is the most often a session's last-seen time is written.
	// Reads in between cost no write. Default 1m.
	TouchInterval time.Duration
	// MaxSessionsPerUser caps the concurrent sessions of one user: a login
	// beyond it revokes that user's least recently seen session (as precise as
	// TouchInterval). Default 0: no cap.
	MaxSessionsPerUser int
	// ErrorHandler answers a request whose session could not be saved.
	// Default: 500 Internal Server Error and a log line.
	ErrorHandler func(http.ResponseWriter, *http.Request, error)
	// Logger receives lifecycle (Debug) and security (Warn) events. Tokens and
	// cookie values are never logged, only a keyed hash of the token.
	// Default: slog.Default().
	Logger *slog.Logger
	// ClientIP returns the address shown in a session's Info. Default: the
	// host part of Request.RemoteAddr. Read a proxy header here only if the
	// proxy is trusted to set it.
	ClientIP func(*http.Request) string
	// Observer, if set, hears of every store operation (with its latency)
	// and every security event, for metrics. Default: none, at no cost.
	Observer Observer
	// Bearer carries the token in headers instead of a cookie, for clients
	// that keep no cookies (mobile apps, CLIs, API clients). A request
	// presents it as "Authorization: Bearer <token>"; a response that
	// issues a token (a new session, Login, Renew) sends it in the
	// Session-Token header, and one that ends the session sends that header
	// empty. The token is the same signed, encrypted value a cookie would
	// carry, with the same rotation, revocation and logging; it is never
	// read from a URL. Use a Manager of its own for the API's routes.
	// Default false: a cookie.
	Bearer bool
}

// TokenHeader is the response header that carries a new token when
// Options.Bearer is set.
const TokenHeader = "Session-Token"

// CookieOptions sets the session cookie's attributes. HttpOnly is always on.
// The zero value of every field means its default, so the zero CookieOptions
// is a __Host-session cookie: Secure, HttpOnly, SameSite=Lax, Path=/.
type CookieOptions struct {
	// Name defaults to "__Host-session" ("session" when Insecure).
	Name string
	// Path defaults to "/". A __Host- cookie must keep "/".
	Path string
	// Domain defaults to none (host-only). A __Host- cookie must keep none.
	Domain string
	// SameSite defaults to http.SameSiteLaxMode.
	SameSite http.SameSite
	// Insecure drops the Secure attribute and the __Host- prefix, for plain
	// HTTP during development only. Default false.
	Insecure bool
	// SessionOnly omits Max-Age, so the browser forgets the cookie when it
	// closes, except for a session logged in with LoginOptions{Remember:
	// true}. Default false: Max-Age runs to the session's absolute end.
	SessionOnly bool
}

// config is Options after validation and defaults: private, so callers
// cannot change a running Manager.
type config struct {
	idle, lifetime, touch time.Duration
	rememberLifetime      time.Duration
	rememberIdle          time.Duration
	maxPerUser            int
	cookie                CookieOptions
	errorHandler          func(http.ResponseWriter, *http.Request, error)
	logger                *slog.Logger
	clientIP              func(*http.Request) string
	observer              Observer
	bearer                bool
}

func (o *Options) validate() (config, error) {
	c := config{
		idle:             orDefault(o.IdleTimeout, DefaultIdleTimeout),
		lifetime:         orDefault(o.Lifetime, DefaultLifetime),
		touch:            orDefault(o.TouchInterval, DefaultTouchInterval),
		rememberLifetime: orDefault(o.RememberLifetime, DefaultRememberLifetime),
		maxPerUser:       o.MaxSessionsPerUser,
		cookie:           o.Cookie,
		errorHandler:     o.ErrorHandler,
		logger:           o.Logger,
		clientIP:         o.ClientIP,
		observer:         o.Observer,
		bearer:           o.Bearer,
	}
	if len(o.Secrets) == 0 {
		return c, fmt.Errorf("%w: Secrets is empty", ErrInvalidOptions)
	}
	for i, s := range o.Secrets {
		if len(s) < MinSecretLength {
			return c, fmt.Errorf("%w: Secrets[%d] is %d bytes, need at least %d", ErrInvalidOptions, i, len(s), MinSecretLength)
		}
	}
	if err := checkDurations(
		namedDuration{"IdleTimeout", o.IdleTimeout},
		namedDuration{"Lifetime", o.Lifetime},
		namedDuration{"TouchInterval", o.TouchInterval},
		namedDuration{"RememberLifetime", o.RememberLifetime},
		namedDuration{"RememberIdleTimeout", o.RememberIdleTimeout},
	); err != nil {
		return c, err
	}
	c.rememberIdle = orDefault(o.RememberIdleTimeout, c.rememberLifetime)
	if o.MaxSessionsPerUser < 0 {
		return c, fmt.Errorf("%w: MaxSessionsPerUser is negative", ErrInvalidOptions)
	}
	if err := c.cookie.validate(); err != nil {
		return c, err
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.errorHandler == nil {
		logger := c.logger
		c.errorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			logger.ErrorContext(r.Context(), "session: request failed", "error", err, "method", r.Method, "path", r.URL.Path)
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		}
	}
	if c.clientIP == nil {
		c.clientIP = remoteHost
	}
	return c, nil
}

// validate fills the cookie defaults and refuses attributes a browser would
// reject or that would weaken the cookie without saying so.
func (co *CookieOptions) validate() error {
	if co.Name == "" {
		co.Name = DefaultCookieName
		if co.Insecure {
			co.Name = DefaultInsecureCookieName
		}
	}
	if co.Path == "" {
		co.Path = "/"
	}
	if co.SameSite == 0 || co.SameSite == http.SameSiteDefaultMode {
		co.SameSite = http.SameSiteLaxMode
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: cookie: "+format, append([]any{ErrInvalidOptions}, args...)...)
	}
	probe := http.Cookie{Name: co.Name, Value: "x", Path: co.Path, Domain: co.Domain}
	if err := probe.Valid(); err != nil {
		return bad("%v", err)
	}
	if !strings.HasPrefix(co.Path, "/") {
		return bad("Path %q must start with /", co.Path)
	}
	hostPrefix := strings.HasPrefix(co.Name, "__Host-")
	if co.Insecure && (hostPrefix || strings.HasPrefix(co.Name, "__Secure-")) {
		return bad("name %q needs Secure, but Insecure is set", co.Name)
	}
	if hostPrefix && (co.Path != "/" || co.Domain != "") {
		return bad("a __Host- cookie needs Path \"/\" and no Domain")
	}
	if co.Insecure && co.SameSite == http.SameSiteNoneMode {
		return bad("SameSite=None needs Secure, but Insecure is set")
	}
	return nil
}

// MaxDuration bounds every duration option: a session that must end in a
// century is a configuration mistake, and larger values overflow the
// arithmetic of expiry times.
const MaxDuration = 100 * 365 * 24 * time.Hour

type namedDuration struct {
	name string
	d    time.Duration
}

// checkDurations refuses, in the order given, a duration that is negative,
// under a millisecond (stores keep milliseconds) or over MaxDuration. Zero
// means the default.
func checkDurations(ds ...namedDuration) error {
	for _, nd := range ds {
		if nd.d < 0 || (nd.d > 0 && nd.d < time.Millisecond) || nd.d > MaxDuration {
			return fmt.Errorf("%w: %s is %v, need 0 (default) or 1ms to %v", ErrInvalidOptions, nd.name, nd.d, MaxDuration)
		}
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ValidateUserID reports whether id can name a user: any byte string of 1 to
// MaxUserIDLength bytes. The stores encode it, so no character is special.
func ValidateUserID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidUserID)
	case len(id) > MaxUserIDLength:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidUserID, len(id), MaxUserIDLength)
	}
	return nil
}
