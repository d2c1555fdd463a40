package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// sentinelMasterName is the name the sentinels of StartSentinel
// monitor the primary under, for redis.FailoverOptions.MasterName.
const sentinelMasterName = "sessiontest"

// sentinelDownAfter is the sentinels' down-after-milliseconds: a primary
// silent this long is failed over, which then takes a second or two more.
const sentinelDownAfter = 1000 * time.Millisecond

// Sentinel is a Sentinel-managed Redis on loopback, started for one
// test: one primary, one replica and three sentinels (quorum 2). Its
// methods are safe for concurrent use. The zero value has no servers: use
// StartSentinel.
type Sentinel struct {
	// Data holds the two data servers; which is the primary changes with
	// failovers (see Primary).
	Data      []*Server
	sentinels []*Server
}

// StartSentinel starts a primary, a replica of it and three sentinels
// monitoring it, each redis-server on a free loopback port with no
// persistence, waits until the sentinels know each other and the replica
// is in sync, and kills them all when the test ends. It skips the test when
// redis-server is missing, unless SESSION_REQUIRE_REDIS is set.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin := lookRedis(t, "redis-server")
	s := &Sentinel{}
	quick := []string{"--repl-diskless-sync-delay", "0"}
	primary := startNode(t, bin, func(int) ([]string, error) {
		return append([]string{"--dir", t.TempDir()}, quick...), nil
	})
	if primary == nil {
		t.FailNow()
	}
	_, primaryPort, _ := net.SplitHostPort(primary.Addr)
	replica := startNode(t, bin, func(int) ([]string, error) {
		return append([]string{"--dir", t.TempDir(), "--replicaof", "127.0.0.1", primaryPort}, quick...), nil
	})
	if replica == nil {
		t.FailNow()
	}
	s.Data = []*Server{primary, replica}
	for i := range 3 {
		dir := t.TempDir()
		var lastErr error
		for range 3 {
			port, err := freePort()
			if err != nil {
				t.Fatalf("finding a free port: %v", err)
			}
			// Sentinel rewrites its config file, so each gets its own.
			conf := filepath.Join(dir, "sentinel.conf")
			text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\nlogfile \"\"\ndir %s\n"+
				"sentinel monitor %s 127.0.0.1 %s 2\n"+
				"sentinel down-after-milliseconds %s %d\n"+
				"sentinel failover-timeout %s 10000\n"+
				"sentinel parallel-syncs %s 1\n",
				port, dir, sentinelMasterName, primaryPort, sentinelMasterName, sentinelDownAfter.Milliseconds(),
				sentinelMasterName, sentinelMasterName)
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			srv := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), bin: bin, port: port,
				args: []string{conf, "--sentinel"}}
			if lastErr = srv.start(); lastErr == nil {
				t.Cleanup(srv.stop)
				s.sentinels = append(s.sentinels, srv)
				break
			}
		}
		if lastErr != nil {
			t.Fatalf("starting sentinel %d: %v", i, lastErr)
		}
	}
	if err := s.waitReady(30 * time.Second); err != nil {
		t.Fatalf("new sentinel setup: %v", err)
	}
	return s
}

// sentinelAddrs returns the sentinels' addresses, for
// redis.FailoverOptions.SentinelAddrs.
func (s *Sentinel) sentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, n := range s.sentinels {
		addrs[i] = n.Addr
	}
	return addrs
}

// Client returns a failover client (redis.NewFailoverClient), closed when
// the test ends. opts may be nil; its MasterName and SentinelAddrs are
// filled in, and its timeouts default to a 1s dial and read.
func (s *Sentinel) Client(t testing.TB, opts *redis.FailoverOptions) *redis.Client {
	t.Helper()
	o := s.options(opts)
	c := redis.NewFailoverClient(&o)
	t.Cleanup(func() { c.Close() })
	return c
}

// ClusterClient returns redis.NewFailoverClusterClient's client, which can
// route read-only commands to the replica, closed when the test ends.
func (s *Sentinel) ClusterClient(t testing.TB, opts *redis.FailoverOptions) *redis.ClusterClient {
	t.Helper()
	o := s.options(opts)
	c := redis.NewFailoverClusterClient(&o)
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *Sentinel) options(opts *redis.FailoverOptions) redis.FailoverOptions {
	o := redis.FailoverOptions{}
	if opts != nil {
		o = *opts
	}
	o.MasterName = sentinelMasterName
	o.SentinelAddrs = s.sentinelAddrs()
	if o.DialTimeout == 0 {
		o.DialTimeout = time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = time.Second
	}
	return o
}

// Primary returns the data server the sentinels currently name primary.
func (s *Sentinel) Primary() (*Server, error) {
	var lastErr error
	for _, sn := range s.sentinels {
		if !sn.running() {
			continue
		}
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		addr, err := c.GetMasterAddrByName(ctx, sentinelMasterName).Result()
		cancel()
		c.Close()
		if err != nil {
			lastErr = err
			continue
		}
		hostPort := net.JoinHostPort(addr[0], addr[1])
		for _, d := range s.Data {
			if d.Addr == hostPort {
				return d, nil
			}
		}
		return nil, fmt.Errorf("sentinel %s names %s, which this setup did not start", sn.Addr, hostPort)
	}
	return nil, fmt.Errorf("no sentinel answered: %v", lastErr)
}

// WaitFailover waits, at most timeout, until the sentinels name a primary
// other than old and that server says it is a primary.
func (s *Sentinel) WaitFailover(old *Server, timeout time.Duration) (*Server, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		p, err := s.Primary()
		switch {
		case err != nil:
			last = err
		case p == old:
			last = fmt.Errorf("sentinels still name %s", old.Addr)
		default:
			role, err := nodeRole(p.Addr)
			if err == nil && role == "master" {
				return p, nil
			}
			last = fmt.Errorf("new primary %s: role %q, %v", p.Addr, role, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("no failover after %v: %w", timeout, last)
}

// waitReady waits until every sentinel sees the other two and the replica,
// and the replica is in sync, so a failover can happen.
func (s *Sentinel) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = s.ready(); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %w", timeout, last)
}

func (s *Sentinel) ready() error {
	repl, err := nodeInfo(s.Data[1].Addr, "INFO", "replication")
	if err != nil {
		return err
	}
	if repl["master_link_status"] != "up" {
		return fmt.Errorf("replica link %q", repl["master_link_status"])
	}
	for _, sn := range s.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		m, err := c.Master(ctx, sentinelMasterName).Result()
		cancel()
		c.Close()
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", sn.Addr, err)
		}
		if m["num-other-sentinels"] != "2" || m["num-slaves"] != "1" {
			return fmt.Errorf("sentinel %s sees %s other sentinels and %s replicas", sn.Addr, m["num-other-sentinels"], m["num-slaves"])
		}
	}
	return nil
}
