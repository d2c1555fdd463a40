package sessiontest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server process started for one test.
type RedisServer struct {
	Addr string
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server on a free loopback port, with no
// persistence, and stops it when the test ends. It skips the test when
// redis-server is not on PATH, unless SESSION_REQUIRE_REDIS is set (as CI
// does), in which case it fails: there, a skip would hide missing coverage.
// Extra arguments go to redis-server ("--maxmemory", "1mb", ...).
func StartRedis(t testing.TB, args ...string) *RedisServer {
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

func startRedisOn(bin string, port int, extra []string) (*RedisServer, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", os.TempDir(),
		"--logfile", ""}, extra...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	srv := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return srv, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.stop()
	return nil, fmt.Errorf("redis-server on port %d did not answer PING within 5s", port)
}

func (s *RedisServer) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// Client returns a client for the server, closed when the test ends.
func (s *RedisServer) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}
