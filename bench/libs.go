package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
)

// Every library is configured alike: a 30-minute sliding idle timeout where
// the library has one, a 12-hour absolute lifetime.
const (
	idleTimeout = 30 * time.Minute
	lifetime    = 12 * time.Hour
	loginUser   = "user-42"
)

// The three small values a new session stores; read reads the first two.
var newValues = [3][2]string{{"lang", "en-GB"}, {"theme", "dark"}, {"cart", "sku-1234,sku-5678"}}

// Paths of the scenario handler. Each library serves the same paths with
// the same bodies, so one test checks them all.
const (
	pathNew       = "/new"       // stores the three values; body "ok"
	pathRead      = "/read"      // body "<lang> <theme> <user>"
	pathWrite     = "/write"     // increments "n"; body: the new count
	pathUntouched = "/untouched" // never loads the session; body "ok"
	pathLogin     = "/login"     // signs in as loginUser; body "ok"
)

// api is how the scenario handler uses one library's session inside a request.
type api interface {
	create(w http.ResponseWriter, r *http.Request) error
	read(w http.ResponseWriter, r *http.Request) (lang, theme, user string, err error)
	incr(w http.ResponseWriter, r *http.Request) (int64, error)
	login(w http.ResponseWriter, r *http.Request, userID string) error
}

// lib is one library under test, set up with its middleware.
type lib struct {
	name       string
	cookieName string
	handler    http.Handler  // the scenario handler inside the library's middleware
	client     *redis.Client // nil for the memory stores, ours-pg, scs-pg and none
	pg         *PGCounter    // the PostgreSQL round trips of the PostgreSQL libraries; nil for the others
	close      func()
}

// scenarioHandler serves the scenario paths through a.
func scenarioHandler(a api) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		switch r.URL.Path {
		case pathUntouched:
		case pathNew:
			err = a.create(w, r)
		case pathRead:
			var lang, theme, user string
			if lang, theme, user, err = a.read(w, r); err == nil {
				_, _ = io.WriteString(w, lang+" "+theme+" "+user)
				return
			}
		case pathWrite:
			var n int64
			if n, err = a.incr(w, r); err == nil {
				_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
				return
			}
		case pathLogin:
			err = a.login(w, r, loginUser)
		default:
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
}

// newRedisClient returns a client for addr with a pool large enough for the
// load test's 64 connections, counting its round trips in c.
func newRedisClient(addr string, c *Counter) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 128})
	if c != nil {
		rdb.AddHook(c)
	}
	return rdb
}

// --- sessionkit/session ---

type oursAPI struct{ m *session.Manager }

func newOurs(name string, store session.Store, rdb *redis.Client, closeStore func()) (*lib, error) {
	m, err := session.New(session.Options{
		Store:       store,
		Secrets:     [][]byte{[]byte("bench secret: 32 bytes or longer, not for production")},
		IdleTimeout: idleTimeout,
		Lifetime:    lifetime,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	return &lib{
		name:       name,
		cookieName: session.DefaultCookieName,
		handler:    m.Middleware(scenarioHandler(oursAPI{m})),
		client:     rdb,
		close: func() {
			m.Close()
			closeStore()
		},
	}, nil
}

// newOursRedis is this library on a RedisStore.
func newOursRedis(addr string, c *Counter) (*lib, error) {
	rdb := newRedisClient(addr, c)
	store, err := session.NewRedisStore(rdb, session.RedisOptions{})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return newOurs("ours", store, rdb, func() { rdb.Close() })
}

// newOursCache is this library on a RedisStore with its local read cache.
func newOursCache(addr string, c *Counter) (*lib, error) {
	rdb := newRedisClient(addr, c)
	store, err := session.NewRedisStore(rdb, session.RedisOptions{LocalCache: session.LocalCacheOptions{Size: 10000}})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return newOurs("ours-cache", store, rdb, func() {
		store.Close()
		rdb.Close()
	})
}

func newOursMemory() (*lib, error) {
	ms := session.NewMemoryStore()
	return newOurs("ours-mem", ms, nil, func() { ms.Close() })
}

func (a oursAPI) create(w http.ResponseWriter, r *http.Request) error {
	s, err := a.m.Load(r.Context())
	if err != nil {
		return err
	}
	for _, kv := range newValues {
		s.Set(kv[0], kv[1])
	}
	return nil
}

func (a oursAPI) read(w http.ResponseWriter, r *http.Request) (string, string, string, error) {
	s, err := a.m.Load(r.Context())
	if err != nil {
		return "", "", "", err
	}
	lang, _ := s.Get("lang")
	theme, _ := s.Get("theme")
	return lang, theme, s.UserID(), nil
}

func (a oursAPI) incr(w http.ResponseWriter, r *http.Request) (int64, error) {
	s, err := a.m.Load(r.Context())
	if err != nil {
		return 0, err
	}
	return s.Incr(r.Context(), "n", 1)
}

func (a oursAPI) login(w http.ResponseWriter, r *http.Request, userID string) error {
	s, err := a.m.Load(r.Context())
	if err != nil {
		return err
	}
	return s.Login(r.Context(), userID)
}

// --- alexedwards/scs v2 ---

type scsAPI struct{ sm *scs.SessionManager }

func newSCS(name string, store scs.Store, rdb *redis.Client, closeStore func()) *lib {
	// scs.New starts a memstore with a cleanup goroutine (a one-minute
	// ticker), replaced here. Its StopCleanup races with the goroutine's
	// start (the race detector says so), so it is left running.
	sm := scs.New()
	sm.Store = store
	sm.IdleTimeout = idleTimeout // sliding expiry, as ours: every load re-commits
	sm.Lifetime = lifetime
	sm.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	return &lib{
		name:       name,
		cookieName: sm.Cookie.Name,
		handler:    sm.LoadAndSave(scenarioHandler(scsAPI{sm})),
		client:     rdb,
		close:      closeStore,
	}
}

func newSCSRedis(addr string, c *Counter) *lib {
	rdb := newRedisClient(addr, c)
	return newSCS("scs-idle", goredisstore.New(rdb), rdb, func() { rdb.Close() })
}

func newSCSMemory() *lib {
	// No cleanup goroutine (see newSCS): expired sessions are still refused
	// on lookup, and a benchmark's sessions do not expire.
	return newSCS("scs-mem", memstore.NewWithCleanupInterval(0), nil, func() {})
}

func (a scsAPI) create(w http.ResponseWriter, r *http.Request) error {
	for _, kv := range newValues {
		a.sm.Put(r.Context(), kv[0], kv[1])
	}
	return nil
}

func (a scsAPI) read(w http.ResponseWriter, r *http.Request) (string, string, string, error) {
	ctx := r.Context()
	return a.sm.GetString(ctx, "lang"), a.sm.GetString(ctx, "theme"), a.sm.GetString(ctx, "user"), nil
}

func (a scsAPI) incr(w http.ResponseWriter, r *http.Request) (int64, error) {
	n := a.sm.GetInt(r.Context(), "n") + 1
	a.sm.Put(r.Context(), "n", n)
	return int64(n), nil
}

func (a scsAPI) login(w http.ResponseWriter, r *http.Request, userID string) error {
	if err := a.sm.RenewToken(r.Context()); err != nil {
		return err
	}
	a.sm.Put(r.Context(), "user", userID)
	return nil
}

// --- gorilla/sessions on Redis ---

// gorilla/sessions has no middleware: its README has each handler call
// store.Get and then Save, and so does this adapter.
type gorillaAPI struct{ store *gorillaRedisStore }

const gorillaCookie = "session"

func newGorilla(addr string, c *Counter) *lib {
	rdb := newRedisClient(addr, c)
	store := newGorillaRedisStore(rdb, sessions.Options{Path: "/", MaxAge: int(idleTimeout / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return &lib{
		name:       "gorilla",
		cookieName: gorillaCookie,
		handler:    scenarioHandler(gorillaAPI{store}),
		client:     rdb,
		close:      func() { rdb.Close() },
	}
}

func (a gorillaAPI) create(w http.ResponseWriter, r *http.Request) error {
	s, err := a.store.Get(r, gorillaCookie)
	if err != nil {
		return err
	}
	for _, kv := range newValues {
		s.Values[kv[0]] = kv[1]
	}
	return s.Save(r, w)
}

func (a gorillaAPI) read(w http.ResponseWriter, r *http.Request) (string, string, string, error) {
	s, err := a.store.Get(r, gorillaCookie)
	if err != nil {
		return "", "", "", err
	}
	lang, _ := s.Values["lang"].(string)
	theme, _ := s.Values["theme"].(string)
	user, _ := s.Values["user"].(string)
	return lang, theme, user, nil
}

func (a gorillaAPI) incr(w http.ResponseWriter, r *http.Request) (int64, error) {
	s, err := a.store.Get(r, gorillaCookie)
	if err != nil {
		return 0, err
	}
	n, _ := s.Values["n"].(int64)
	n++
	s.Values["n"] = n
	return n, s.Save(r, w)
}

func (a gorillaAPI) login(w http.ResponseWriter, r *http.Request, userID string) error {
	s, err := a.store.Get(r, gorillaCookie)
	if err != nil {
		return err
	}
	// gorilla/sessions has no rotation; a careful user drops the old
	// session and saves the values under a new ID.
	if err := a.store.delete(r.Context(), s); err != nil {
		return err
	}
	s.ID = ""
	s.Values["user"] = userID
	return s.Save(r, w)
}

// --- raw go-redis: the lower bound ---

// rawAPI is the least a Redis session can cost: the cookie is the bare
// token (no signing, no encryption), a read is one pipeline of HGETALL and
// PEXPIRE, a write adds one pipeline of HSET and PEXPIRE. It has no
// middleware: the handler does the Redis work itself.
type rawAPI struct {
	rdb *redis.Client
	lua bool // read through a script doing the same two commands (raw-lua)
}

// rawLuaLoad is raw's read as a script: it shows what running a read as
// Lua costs by itself, against the same commands in a pipeline.
var rawLuaLoad = redis.NewScript(`local h = redis.call('HGETALL', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return h`)

const (
	rawCookie = "raw"
	rawPrefix = "raw:"
)

func newRaw(name, addr string, c *Counter) *lib {
	rdb := newRedisClient(addr, c)
	return &lib{
		name:       name,
		cookieName: rawCookie,
		handler:    scenarioHandler(rawAPI{rdb: rdb, lua: name == "raw-lua"}),
		client:     rdb,
		close:      func() { rdb.Close() },
	}
}

var errRawNoSession = errors.New("raw: no session")

func (a rawAPI) newToken(w http.ResponseWriter) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: rawCookie, Value: tok, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteLaxMode, MaxAge: int(lifetime / time.Second)})
	return tok, nil
}

// load is one pipeline: HGETALL and PEXPIRE.
func (a rawAPI) load(ctx context.Context, r *http.Request) (string, map[string]string, error) {
	c, err := r.Cookie(rawCookie)
	if err != nil {
		return "", nil, errRawNoSession
	}
	key := rawPrefix + c.Value
	if a.lua {
		list, err := rawLuaLoad.Run(ctx, a.rdb, []string{key}, idleTimeout.Milliseconds()).StringSlice()
		if err != nil {
			return "", nil, err
		}
		v := make(map[string]string, len(list)/2)
		for i := 0; i+1 < len(list); i += 2 {
			v[list[i]] = list[i+1]
		}
		return key, v, nil
	}
	var get *redis.MapStringStringCmd
	_, err = a.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.HGetAll(ctx, key)
		p.PExpire(ctx, key, idleTimeout)
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return key, get.Val(), nil
}

func (a rawAPI) create(w http.ResponseWriter, r *http.Request) error {
	tok, err := a.newToken(w)
	if err != nil {
		return err
	}
	ctx, key := r.Context(), rawPrefix+tok
	_, err = a.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, newValues[0][0], newValues[0][1], newValues[1][0], newValues[1][1], newValues[2][0], newValues[2][1])
		p.PExpire(ctx, key, idleTimeout)
		return nil
	})
	return err
}

func (a rawAPI) read(w http.ResponseWriter, r *http.Request) (string, string, string, error) {
	_, v, err := a.load(r.Context(), r)
	if errors.Is(err, errRawNoSession) {
		return "", "", "", nil // anonymous: nothing to read
	}
	if err != nil {
		return "", "", "", err
	}
	return v["lang"], v["theme"], v["user"], nil
}

func (a rawAPI) incr(w http.ResponseWriter, r *http.Request) (int64, error) {
	ctx := r.Context()
	key, v, err := a.load(ctx, r)
	if err != nil {
		return 0, err
	}
	n, _ := strconv.ParseInt(v["n"], 10, 64)
	n++
	_, err = a.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "n", n)
		p.PExpire(ctx, key, idleTimeout)
		return nil
	})
	return n, err
}

func (a rawAPI) login(w http.ResponseWriter, r *http.Request, userID string) error {
	ctx := r.Context()
	old, v, err := a.load(ctx, r)
	if err != nil {
		return err
	}
	tok, err := a.newToken(w)
	if err != nil {
		return err
	}
	key := rawPrefix + tok
	args := make([]any, 0, 2*len(v)+2)
	for k, x := range v {
		args = append(args, k, x)
	}
	args = append(args, "user", userID)
	_, err = a.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, old)
		p.HSet(ctx, key, args...)
		p.PExpire(ctx, key, idleTimeout)
		return nil
	})
	return err
}

// --- no middleware at all: the floor for "untouched" ---

type noneAPI struct{}

var errNone = errors.New("none: no session library")

func newNone() *lib {
	return &lib{name: "none", cookieName: "none", handler: scenarioHandler(noneAPI{}), close: func() {}}
}

func (noneAPI) create(http.ResponseWriter, *http.Request) error { return errNone }
func (noneAPI) read(http.ResponseWriter, *http.Request) (string, string, string, error) {
	return "", "", "", errNone
}
func (noneAPI) incr(http.ResponseWriter, *http.Request) (int64, error) { return 0, errNone }
func (noneAPI) login(http.ResponseWriter, *http.Request, string) error { return errNone }

// newLib builds the library called name; addr is a redis-server for the
// Redis-backed ones, dsn a PostgreSQL prepared by preparePostgres for the
// PostgreSQL ones, whose round trips go to pc.
func newLib(name, addr, dsn string, c *Counter, pc *PGCounter) (*lib, error) {
	switch name {
	case "ours-pg":
		return newOursPG(name, dsn, "", c, pc)
	case "ours-pgcache":
		return newOursPG(name, dsn, addr, c, pc)
	case "scs-pg":
		return newSCSPG(dsn, pc)
	case "ours":
		return newOursRedis(addr, c)
	case "ours-cache":
		return newOursCache(addr, c)
	case "scs-idle":
		return newSCSRedis(addr, c), nil
	case "gorilla":
		return newGorilla(addr, c), nil
	case "raw", "raw-lua":
		return newRaw(name, addr, c), nil
	case "ours-mem":
		return newOursMemory()
	case "scs-mem":
		return newSCSMemory(), nil
	case "none":
		return newNone(), nil
	}
	return nil, fmt.Errorf("bench: no library %q", name)
}

// Library names, Redis-backed first.
var (
	redisLibs  = []string{"ours", "ours-cache", "scs-idle", "gorilla", "raw", "raw-lua"}
	memoryLibs = []string{"ours-mem", "scs-mem"}
)
