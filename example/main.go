// Command example is a small web app that shows the session library at
// work: a visit counter and a cart for anonymous visitors, sign in (token
// rotation), an account page, a devices page with per-device revoke and
// "log out other devices", and sign out.
//
//	go run ./example                      # embedded Redis (miniredis), nothing to install
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./example
//	go run ./example -store=memory
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log"
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

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	storeKind := flag.String("store", "redis", `"redis" (REDIS_URL, or an embedded miniredis when unset) or "memory"`)
	insecure := flag.Bool("insecure", false, "drop the Secure cookie attribute, for browsers that refuse Secure cookies over http://localhost")
	flag.Parse()
	if err := run(*addr, *storeKind, *insecure); err != nil {
		log.Fatal(err)
	}
}

func run(addr, storeKind string, insecure bool) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	store, closeStore, err := openStore(storeKind, logger)
	if err != nil {
		return err
	}
	defer closeStore()

	m, err := session.New(session.Options{
		Store:         store,
		Secrets:       [][]byte{secret(logger)},
		Cookie:        session.CookieOptions{Insecure: insecure},
		IdleTimeout:   30 * time.Minute,
		Lifetime:      12 * time.Hour,
		TouchInterval: 10 * time.Second, // short, so the devices page shows activity
		Logger:        logger,
	})
	if err != nil {
		return err
	}
	defer m.Close()

	app, err := newApp(m)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           app.routes(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("session demo on http://%s (store: %s) — Ctrl-C to stop\n", displayAddr(ln.Addr()), storeKind)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Println("stopped")
	return nil
}

// displayAddr shows a loopback listener as localhost: browsers treat
// http://localhost as a secure context, so the Secure cookie works there.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if ok && tcp.IP.IsLoopback() {
		return fmt.Sprintf("localhost:%d", tcp.Port)
	}
	return a.String()
}

func openStore(kind string, logger *slog.Logger) (session.Store, func(), error) {
	switch kind {
	case "memory":
		s := session.NewMemoryStore()
		return s, func() { s.Close() }, nil
	case "redis":
		if url := os.Getenv("REDIS_URL"); url != "" {
			opts, err := redis.ParseURL(url)
			if err != nil {
				return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
			}
			c := redis.NewClient(opts)
			return session.NewRedisStore(c, session.RedisOptions{}), func() { c.Close() }, nil
		}
		mr, err := miniredis.Run()
		if err != nil {
			return nil, nil, fmt.Errorf("starting the embedded Redis: %w", err)
		}
		logger.Info("using an embedded Redis (miniredis); set REDIS_URL to use a real one", "addr", mr.Addr())
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		return session.NewRedisStore(c, session.RedisOptions{}), func() { c.Close(); mr.Close() }, nil
	}
	return nil, nil, fmt.Errorf("-store=%q: want redis or memory", kind)
}

// secret reads SESSION_SECRET, or makes a random one for this run.
func secret(logger *slog.Logger) []byte {
	if s := os.Getenv("SESSION_SECRET"); s != "" {
		return []byte(s)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		log.Fatal(err)
	}
	logger.Warn("SESSION_SECRET is not set: using a random development secret, so sessions end when the demo restarts. Set SESSION_SECRET (32+ bytes) to keep them.")
	return b
}
