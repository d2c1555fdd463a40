// Package redistest starts real redis-server processes for tests: a single
// server (Start), a Redis Cluster (StartCluster) and a Sentinel setup
// (StartSentinel), each on free loopback ports with no persistence, stopped
// when the test ends. They show what miniredis cannot: eviction, kill -9,
// restarts, failover. Each skips the test when the Redis binaries are not on
// PATH, unless SESSION_REQUIRE_REDIS is set, in which case it fails.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process started for one test by Start or as part
// of a Cluster or Sentinel. Addr is its host:port. Its methods are safe for
// concurrent use. The zero value is not a server: use Start.
type Server struct {
	Addr string
	bin  string
	port int
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts a private redis-server on a free loopback port, with no
// persistence, and stops it when the test ends. It skips the test when
// redis-server is not on PATH, unless SESSION_REQUIRE_REDIS is set (as CI
// does), in which case it fails: there, a skip would hide missing coverage.
// Extra arguments go to redis-server ("--maxmemory", "1mb", ...).
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("SESSION_REQUIRE_REDIS") != "" {
			t.Fatalf("redis-server not found on PATH, and SESSION_REQUIRE_REDIS is set")
		}
		t.Skip("redis-server not found on PATH; install it (apt-get install redis-server) to run the real-Redis tests")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		srv, err := startRedisOn(bin, port, args)
		if err == nil {
			t.Cleanup(srv.stop)
			return srv
		}
		lastErr = err
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startRedisOn(bin string, port int, extra []string) (*Server, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", os.TempDir(),
		"--logfile", ""}, extra...)
	srv := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), bin: bin, port: port, args: args}
	if err := srv.start(); err != nil {
		return nil, err
	}
	return srv, nil
}

// start runs the process and waits until it answers PING.
func (s *Server) start() error {
	cmd := exec.Command(s.bin, s.args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("redis-server on port %d did not answer PING within 5s", s.port)
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Kill ends the server with SIGKILL, as a crash would. It keeps nothing on
// disk, so a restart comes back empty.
func (s *Server) Kill() { s.stop() }

// Restart starts a killed server again on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("restarting redis-server: %v", err)
	}
}

// Client returns a client for the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}
