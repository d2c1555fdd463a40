package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterNodeTimeout is the cluster-node-timeout of the clusters
// StartCluster makes: a primary unreachable this long is failed over,
// so a test's failover takes about this plus a second or two.
const clusterNodeTimeout = 1000 * time.Millisecond

// Cluster is a Redis Cluster of real redis-server processes on
// loopback, started for one test: 3 primaries, each with 1 replica. Its
// methods are safe for concurrent use. The zero value has no servers: use
// StartCluster.
type Cluster struct {
	// nodes are the six servers, in the order given to redis-cli; which of
	// them is a primary changes with failovers (see Primaries).
	nodes []*Server
}

// StartCluster starts six cluster-enabled redis-servers on free
// loopback ports (each with its own temporary directory for nodes.conf, no
// persistence), joins them with "redis-cli --cluster create
// --cluster-replicas 1", waits until every slot is served and every replica
// is in sync, and kills them all when the test ends. It skips the test when
// redis-server or redis-cli is missing, unless SESSION_REQUIRE_REDIS is set,
// as Start does.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin := lookRedis(t, "redis-server")
	cli := lookRedis(t, "redis-cli")
	c := &Cluster{}
	for i := range 6 {
		dir := t.TempDir()
		srv := startNode(t, bin, func(port int) ([]string, error) {
			busPort, err := freePort()
			if err != nil {
				return nil, err
			}
			return []string{"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(busPort),
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--dir", dir,
				"--cluster-node-timeout", strconv.FormatInt(clusterNodeTimeout.Milliseconds(), 10),
				// A replica that lost its primary takes over however stale it
				// is: the tests want a quick failover, not the safest one.
				"--cluster-replica-validity-factor", "0",
				"--repl-diskless-sync-delay", "0",
			}, nil
		})
		if srv == nil {
			t.Fatalf("starting cluster node %d", i)
		}
		c.nodes = append(c.nodes, srv)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatalf("new cluster: %v", err)
	}
	return c
}

// lookRedis finds a Redis binary, or skips (or fails, under
// SESSION_REQUIRE_REDIS) the test.
func lookRedis(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("SESSION_REQUIRE_REDIS") != "" {
			t.Fatalf("%s not found on PATH, and SESSION_REQUIRE_REDIS is set", name)
		}
		t.Skipf("%s not found on PATH; install it (apt-get install redis-server) to run the real-Redis tests", name)
	}
	return bin
}

// startNode starts redis-server on a free port with the arguments args
// returns for that port, retrying on another port if the first is taken,
// and registers its kill with t.Cleanup. Nil if it never started.
func startNode(t testing.TB, bin string, args func(port int) ([]string, error)) *Server {
	t.Helper()
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		extra, err := args(port)
		if err != nil {
			t.Fatalf("preparing redis-server: %v", err)
		}
		srv, err := startRedisOn(bin, port, extra)
		if err == nil {
			t.Cleanup(srv.stop)
			return srv
		}
		lastErr = err
	}
	t.Errorf("starting redis-server: %v", lastErr)
	return nil
}

// addrs returns the address of every node, for redis.ClusterOptions.Addrs.
func (c *Cluster) addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Client returns a cluster client, closed when the test ends. opts may be
// nil; its Addrs are filled in, and its timeouts default to a failover-aware
// 1s dial and read.
func (c *Cluster) Client(t testing.TB, opts *redis.ClusterOptions) *redis.ClusterClient {
	t.Helper()
	o := redis.ClusterOptions{}
	if opts != nil {
		o = *opts
	}
	o.Addrs = c.addrs()
	if o.DialTimeout == 0 {
		o.DialTimeout = time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = time.Second
	}
	cc := redis.NewClusterClient(&o)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// alive returns the nodes whose process runs.
func (c *Cluster) alive() []*Server {
	var out []*Server
	for _, n := range c.nodes {
		if n.running() {
			out = append(out, n)
		}
	}
	return out
}

// Primaries returns the live nodes that currently say they are primaries.
func (c *Cluster) Primaries() ([]*Server, error) {
	var out []*Server
	for _, n := range c.alive() {
		role, err := nodeRole(n.Addr)
		if err != nil {
			return nil, err
		}
		if role == "master" {
			out = append(out, n)
		}
	}
	return out, nil
}

// WaitHealthy waits, at most timeout, until every live node reports
// cluster_state:ok, all 16384 slots are served by three live primaries,
// and every live replica's link to its primary is up.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = c.healthy(); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("cluster not healthy after %v: %w", timeout, last)
}

func (c *Cluster) healthy() error {
	alive := c.alive()
	primaries := 0
	for _, n := range alive {
		info, err := nodeInfo(n.Addr, "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if info["cluster_state"] != "ok" || info["cluster_slots_ok"] != "16384" {
			return fmt.Errorf("%s: cluster_state %s, slots ok %s", n.Addr, info["cluster_state"], info["cluster_slots_ok"])
		}
		repl, err := nodeInfo(n.Addr, "INFO", "replication")
		if err != nil {
			return err
		}
		switch repl["role"] {
		case "master":
			primaries++
		case "slave":
			if repl["master_link_status"] != "up" {
				return fmt.Errorf("%s: replica link %s", n.Addr, repl["master_link_status"])
			}
		}
	}
	if primaries != 3 {
		return fmt.Errorf("%d live primaries, want 3", primaries)
	}
	// Every live node must agree that no slot is served by a dead node.
	for _, n := range alive {
		nodes, err := nodeCommand(n.Addr, "CLUSTER", "NODES")
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(strings.TrimSpace(nodes), "\n") {
			f := strings.Fields(line)
			if len(f) > 8 && strings.Contains(f[2], "master") && (strings.Contains(f[2], "fail") || f[7] != "connected") {
				return fmt.Errorf("%s still sees a failed primary serving slots: %s", n.Addr, line)
			}
		}
	}
	return nil
}

// nodeCommand runs one command on one node with a short-lived connection
// and returns its reply as text.
func nodeCommand(addr string, args ...any) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := c.Do(ctx, args...).Result()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %w", addr, args, err)
	}
	switch v := res.(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	}
	return fmt.Sprint(res), nil
}

// nodeInfo parses an INFO-style "name:value" reply.
func nodeInfo(addr string, args ...any) (map[string]string, error) {
	text, err := nodeCommand(addr, args...)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		if name, value, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[name] = value
		}
	}
	return out, nil
}

func nodeRole(addr string) (string, error) {
	info, err := nodeInfo(addr, "INFO", "replication")
	if err != nil {
		return "", err
	}
	return info["role"], nil
}

// running reports whether the server's process is up (not killed).
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Pause stops the server's process (SIGSTOP) without ending it, as a stalled
// machine would; Resume continues it. A paused server is still "running".
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("redis-server %s is not running", s.Addr)
	}
	return s.cmd.Process.Signal(sig)
}

// Replicas returns the live nodes that currently say they are replicas.
func (c *Cluster) Replicas() ([]*Server, error) {
	var out []*Server
	for _, n := range c.alive() {
		role, err := nodeRole(n.Addr)
		if err != nil {
			return nil, err
		}
		if role == "slave" {
			out = append(out, n)
		}
	}
	return out, nil
}
