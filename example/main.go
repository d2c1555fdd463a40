// Command example is a small web app that shows the session library at
// work: a visit counter and a cart for anonymous visitors, sign in (token
// rotation), an account page, a devices page with per-device revoke and
// "log out other devices", and sign out.
//
//	go run ./example                         # embedded Redis (miniredis): nothing to install
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./example
//	go run ./example -fallback               # Redis behind a FallbackStore
//	go run ./example -store=memory           # MemoryStore
//	go run ./example -addr 127.0.0.1:9090
//	go run ./example -insecure               # no Secure attribute, for Safari on http://localhost
//
// SESSION_SECRET (32 bytes or more) keeps sessions valid across restarts;
// without it the app makes a random secret for this run and says so.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
)

// config is what the command line and the environment choose.
type config struct {
	addr     string
	store    string // "redis" or "memory"
	fallback bool   // wrap Redis in a FallbackStore
	insecure bool   // drop Secure and the __Host- prefix
	redisURL string // REDIS_URL; "" runs an embedded miniredis
	secret   string // SESSION_SECRET; "" makes a random one
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "address to listen on")
	flag.StringVar(&cfg.store, "store", "redis", `"redis" (REDIS_URL, or an embedded miniredis when it is unset) or "memory"`)
	flag.BoolVar(&cfg.fallback, "fallback", false, "wrap Redis in a FallbackStore, so the app keeps serving from memory while Redis is down")
	flag.BoolVar(&cfg.insecure, "insecure", false, "drop the Secure cookie attribute, for browsers that refuse Secure cookies over http://localhost (development only)")
	flag.Parse()
	cfg.redisURL = os.Getenv("REDIS_URL")
	cfg.secret = os.Getenv("SESSION_SECRET")

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()
	if err := run(ctx, cfg, os.Stdout, logger); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

// run serves the demo until ctx ends, then shuts down cleanly. It prints
// the URL to open on out.
func run(ctx context.Context, cfg config, out io.Writer, logger *slog.Logger) error {
	secret, err := sessionSecret(cfg.secret, out)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer st.close()

	m, err := session.New(session.Options{
		Store:   st.store,
		Secrets: [][]byte{secret},
		// Browser-session cookies, but for "Remember me" logins.
		Cookie:        session.CookieOptions{Insecure: cfg.insecure, SessionOnly: true},
		IdleTimeout:   30 * time.Minute,
		Lifetime:      12 * time.Hour,
		TouchInterval: 10 * time.Second, // short, so the devices page shows activity
		Logger:        logger,
	})
	if err != nil {
		return err
	}
	defer m.Close()

	app, err := newApp(m, appConfig{storeName: st.name, healthy: st.healthy, outage: st.outage, insecure: cfg.insecure})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           app.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(out, "session demo: open http://%s  (store: %s; Ctrl-C to stop)\n", displayAddr(ln.Addr()), st.name)

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

// openedStore is the store the demo runs on, with what the pages say about it.
type openedStore struct {
	store   session.Store
	name    string      // for the console and the page footer
	healthy func() bool // nil unless a FallbackStore is in front
	// outage stops (true) or restarts (false) the embedded Redis, to show a
	// FallbackStore at work; nil unless both are in use.
	outage func(down bool) error
	close  func()
}

func openStore(ctx context.Context, cfg config, logger *slog.Logger) (*openedStore, error) {
	switch cfg.store {
	case "memory":
		if cfg.fallback {
			return nil, errors.New("-fallback wraps Redis in a FallbackStore; it does not go with -store=memory")
		}
		s := session.NewMemoryStore()
		return &openedStore{store: s, name: "MemoryStore", close: func() { s.Close() }}, nil
	case "redis":
	default:
		return nil, fmt.Errorf("-store=%q: want redis or memory", cfg.store)
	}

	var (
		client *redis.Client
		name   string
		closes []func()
		mr     *miniredis.Miniredis
	)
	// withFallback sets the client up as the README's FallbackStore section
	// says: the store's deadline reaches the socket, and no blind retry
	// (a retried Incr whose reply was lost would count twice).
	withFallback := func(o *redis.Options) *redis.Options {
		if cfg.fallback {
			o.ContextTimeoutEnabled, o.MaxRetries = true, -1
		}
		return o
	}
	if cfg.redisURL != "" {
		opts, err := redis.ParseURL(cfg.redisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		client, name = redis.NewClient(withFallback(opts)), "Redis at "+opts.Addr
		ping, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = client.Ping(ping).Err()
		cancel()
		if err != nil && !cfg.fallback {
			client.Close()
			return nil, fmt.Errorf("cannot reach Redis at %s (REDIS_URL): %w; unset REDIS_URL to use the embedded Redis, or add -fallback to serve from memory until it is up", opts.Addr, err)
		}
		if err != nil {
			logger.Warn("Redis is not answering; serving from memory until it does", "addr", opts.Addr, "err", err)
		}
	} else {
		var err error
		mr, err = miniredis.Run() // listens on 127.0.0.1, a free port
		if err != nil {
			return nil, fmt.Errorf("starting the embedded Redis: %w", err)
		}
		stopClock := runClock(mr)
		closes = append(closes, stopClock, mr.Close)
		client, name = redis.NewClient(withFallback(&redis.Options{Addr: mr.Addr()})), "Redis (embedded miniredis)"
	}
	closes = append([]func(){func() { client.Close() }}, closes...)

	rs, err := session.NewRedisStore(client, session.RedisOptions{})
	if err != nil {
		return nil, err
	}
	var store session.Store = rs
	var healthy func() bool
	if cfg.fallback {
		f, err := session.NewFallbackStore(store, nil, session.FallbackOptions{Logger: logger})
		if err != nil {
			return nil, err
		}
		store, healthy, name = f, f.Healthy, name+" behind a FallbackStore"
		closes = append([]func(){func() { f.Close() }}, closes...)
	}
	var outage func(bool) error
	if mr != nil && cfg.fallback {
		outage = func(down bool) error {
			if down {
				mr.Close()
				logger.Warn("the embedded Redis was stopped from the demo page")
				return nil
			}
			logger.Info("the embedded Redis was started again from the demo page")
			return mr.Restart() // same port, same data
		}
	}
	return &openedStore{store: store, name: name, healthy: healthy, outage: outage, close: func() {
		for _, c := range closes {
			c()
		}
	}}, nil
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
