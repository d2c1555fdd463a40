// Package demo is the demo app that `go run ./example` starts: a visit
// counter and a cart for anonymous visitors, sign in (token rotation), an
// account page, a devices page with per-device revoke and "log out other
// devices", and sign out.
//
// It is a package, not a command, so that a command in another module can
// run the same app on a store the core module does not depend on:
// github.com/sessionkit/session/pgstore/cmd/demo adds PostgreSQL through
// Config.Stores. Its API serves those two commands and is not a stable part
// of the library.
package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
)

// Config is what the command line and the environment choose. Its zero
// value is not runnable: Store must name a store.
type Config struct {
	Addr     string
	Store    string // "redis", "memory", or a key of Stores
	Fallback bool   // wrap Redis in a FallbackStore
	Insecure bool   // drop Secure and the __Host- prefix
	RedisURL string // REDIS_URL; "" runs an embedded miniredis
	Secret   string // SESSION_SECRET; "" makes a random one

	// Stores adds store choices to "redis" and "memory", by the name
	// -store takes. A command in a module that may depend on more than
	// the core module uses it to offer other stores.
	Stores map[string]StoreOpener
}

// StoreOpener opens a store for the demo. It is called once, before the
// demo listens, with the context Run was given.
type StoreOpener func(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error)

// Store is the store the demo runs on, with what the pages say about it.
type Store struct {
	Store   session.Store
	Name    string      // for the console and the page footer
	Healthy func() bool // nil unless a FallbackStore is in front
	// Outage stops (true) or restarts (false) the embedded Redis, to show a
	// FallbackStore at work; nil unless both are in use.
	Outage func(down bool) error
	// Close releases the store and what it runs on; Run calls it once,
	// after the server has stopped. Nil means nothing to release.
	Close func()
}

// Main parses the command line (flag.CommandLine: a command may add its own
// flags before calling Main) and the environment into a Config with stores
// added to the choices, and runs the demo until SIGINT or SIGTERM. It exits
// the process with status 1 if the demo fails.
func Main(stores map[string]StoreOpener) {
	cfg := Config{Stores: stores}
	names := append([]string{`"redis" (REDIS_URL, or an embedded miniredis when it is unset)`, `"memory"`}, quoted(slices.Sorted(maps.Keys(stores)))...)
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "address to listen on")
	flag.StringVar(&cfg.Store, "store", "redis", "the session store: "+strings.Join(names, ", "))
	flag.BoolVar(&cfg.Fallback, "fallback", false, "wrap Redis in a FallbackStore, so the app keeps serving from memory while Redis is down")
	flag.BoolVar(&cfg.Insecure, "insecure", false, "drop the Secure cookie attribute, for browsers that refuse Secure cookies over http://localhost (development only)")
	flag.Parse()
	cfg.RedisURL = os.Getenv("REDIS_URL")
	cfg.Secret = os.Getenv("SESSION_SECRET")

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()
	if err := Run(ctx, cfg, os.Stdout, logger); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func quoted(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = `"` + n + `"`
	}
	return out
}

// Run serves the demo until ctx ends, then shuts down cleanly. It prints
// the URL to open on out.
func Run(ctx context.Context, cfg Config, out io.Writer, logger *slog.Logger) error {
	secret, err := sessionSecret(cfg.Secret, out)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if st.Close != nil {
		defer st.Close()
	}

	m, err := session.New(session.Options{
		Store:   st.Store,
		Secrets: [][]byte{secret},
		// Browser-session cookies, but for "Remember me" logins.
		Cookie:        session.CookieOptions{Insecure: cfg.Insecure, SessionOnly: true},
		IdleTimeout:   30 * time.Minute,
		Lifetime:      12 * time.Hour,
		TouchInterval: 10 * time.Second, // short, so the devices page shows activity
		Logger:        logger,
	})
	if err != nil {
		return err
	}
	defer m.Close()

	app, err := newApp(m, appConfig{storeName: st.Name, healthy: st.Healthy, outage: st.Outage, insecure: cfg.Insecure})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           app.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(out, "session demo: open http://%s  (store: %s; Ctrl-C to stop)\n", displayAddr(ln.Addr()), st.Name)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintln(out, "session demo: stopped")
	return nil
}

// displayAddr names a loopback or wildcard listener as localhost: browsers
// treat http://localhost as a secure context and keep the Secure cookie
// there, while a LAN address over plain HTTP would lose it.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if ok && (tcp.IP.IsLoopback() || tcp.IP.IsUnspecified()) {
		return fmt.Sprintf("localhost:%d", tcp.Port)
	}
	return a.String()
}

func openStore(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	switch cfg.Store {
	case "memory":
		if cfg.Fallback {
			return nil, errors.New("-fallback wraps Redis in a FallbackStore; it does not go with -store=memory")
		}
		s := session.NewMemoryStore()
		return &Store{Store: s, Name: "MemoryStore", Close: func() { s.Close() }}, nil
	case "redis":
		return openRedisStore(ctx, cfg, logger)
	}
	if open, ok := cfg.Stores[cfg.Store]; ok {
		return open(ctx, cfg, logger)
	}
	choices := append([]string{"redis", "memory"}, slices.Sorted(maps.Keys(cfg.Stores))...)
	last := len(choices) - 1
	return nil, fmt.Errorf("-store=%q: want %s or %s", cfg.Store, strings.Join(choices[:last], ", "), choices[last])
}

// Redis is the Redis server the demo runs on: the one REDIS_URL names, or
// an embedded miniredis. It is safe for concurrent use.
type Redis struct {
	Client *redis.Client
	Name   string // for the console and the page footer

	embedded *miniredis.Miniredis // nil with REDIS_URL
	closes   []func()
}

// Close closes the client and stops the embedded Redis, if any.
func (r *Redis) Close() {
	for _, c := range r.closes {
		c()
	}
}

// OpenRedis connects to the Redis at cfg.RedisURL, or starts an embedded
// miniredis on a free loopback port whose clock follows the real one when
// cfg.RedisURL is empty. A Redis that does not answer is an error unless
// cfg.Fallback is set.
func OpenRedis(ctx context.Context, cfg Config, logger *slog.Logger) (*Redis, error) {
	// withFallback sets the client up as the README's FallbackStore section
	// says: the store's deadline reaches the socket, and no blind retry
	// (a retried Incr whose reply was lost would count twice).
	withFallback := func(o *redis.Options) *redis.Options {
		if cfg.Fallback {
			o.ContextTimeoutEnabled, o.MaxRetries = true, -1
		}
		return o
	}
	r := new(Redis)
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		r.Client, r.Name = redis.NewClient(withFallback(opts)), "Redis at "+opts.Addr
		ping, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = r.Client.Ping(ping).Err()
		cancel()
		if err != nil && !cfg.Fallback {
			r.Client.Close()
			return nil, fmt.Errorf("cannot reach Redis at %s (REDIS_URL): %w; unset REDIS_URL to use the embedded Redis, or add -fallback to serve from memory until it is up", opts.Addr, err)
		}
		if err != nil {
			logger.Warn("Redis is not answering; serving from memory until it does", "addr", opts.Addr, "err", err)
		}
	} else {
		mr, err := miniredis.Run() // listens on 127.0.0.1, a free port
		if err != nil {
			return nil, fmt.Errorf("starting the embedded Redis: %w", err)
		}
		stopClock := runClock(mr)
		r.closes = append(r.closes, stopClock, mr.Close)
		r.embedded = mr
		r.Client, r.Name = redis.NewClient(withFallback(&redis.Options{Addr: mr.Addr()})), "Redis (embedded miniredis)"
	}
	r.closes = append([]func(){func() { r.Client.Close() }}, r.closes...)
	return r, nil
}

func openRedisStore(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	r, err := OpenRedis(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	closes := []func(){r.Close}
	closeAll := func() {
		for _, c := range closes {
			c()
		}
	}
	rs, err := session.NewRedisStore(r.Client, session.RedisOptions{})
	if err != nil {
		closeAll()
		return nil, err
	}
	st := &Store{Store: rs, Name: r.Name, Close: closeAll}
	if cfg.Fallback {
		f, err := session.NewFallbackStore(rs, nil, session.FallbackOptions{Logger: logger})
		if err != nil {
			closeAll()
			return nil, err
		}
		st.Store, st.Healthy, st.Name = f, f.Healthy, r.Name+" behind a FallbackStore"
		closes = append([]func(){func() { f.Close() }}, closes...)
	}
	if mr := r.embedded; mr != nil && cfg.Fallback {
		st.Outage = func(down bool) error {
			if down {
				mr.Close()
				logger.Warn("the embedded Redis was stopped from the demo page")
				return nil
			}
			logger.Info("the embedded Redis was started again from the demo page")
			return mr.Restart() // same port, same data
		}
	}
	return st, nil
}

// runClock advances the embedded Redis's clock with the real one until the
// returned func is called: miniredis only expires keys when told that time
// has passed, and the demo's idle timeout must be real.
func runClock(mr *miniredis.Miniredis) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				mr.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// sessionSecret returns SESSION_SECRET, or a random secret for this run
// with a note that sessions will not survive a restart.
func sessionSecret(env string, out io.Writer) ([]byte, error) {
	if env != "" {
		if len(env) < session.MinSecretLength {
			return nil, fmt.Errorf("SESSION_SECRET is %d bytes; it must be at least %d (for example: export SESSION_SECRET=$(openssl rand -base64 32))", len(env), session.MinSecretLength)
		}
		return []byte(env), nil
	}
	b := make([]byte, session.MinSecretLength)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	fmt.Fprintln(out, "session demo: SESSION_SECRET is not set, so this run uses a random development secret and")
	fmt.Fprintln(out, "              its sessions end when it stops. To keep them: export SESSION_SECRET=$(openssl rand -base64 32)")
	return b, nil
}
