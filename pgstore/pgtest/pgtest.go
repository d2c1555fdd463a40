// Package pgtest starts a private PostgreSQL server for tests: initdb into a
// temporary directory, postgres on a free loopback port with its unix socket
// in that directory, fsync off, stopped when the test ends. It never touches
// a server that was already running. Launch does the same for a program
// (the demo's -embedded flag), which then calls Close.
//
// PostgreSQL refuses to run as root, so when the test runs as root (as CI
// does) the server runs as an unprivileged user: the "postgres" system user
// if there is one, else "nobody".
//
// The binaries (initdb, pg_ctl, postgres) are looked up on PATH and then in
// /usr/lib/postgresql/*/bin, where Debian's postgresql package puts them.
// Without them the test is skipped, unless SESSION_REQUIRE_POSTGRES is set,
// in which case it fails: there, a skip would hide missing coverage.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a PostgreSQL server started for one test. Its methods are safe
// for concurrent use. The zero value is not a server: use Start.
type Server struct {
	// DSN connects to the server's "postgres" database over TCP as the
	// superuser "postgres", with no password (trust authentication on
	// loopback only).
	DSN string
	// Port is the loopback TCP port the server listens on.
	Port int

	bin  string // directory of the binaries
	dir  string // temporary directory: the data directory, the socket, the log
	data string // data directory
	cred *syscall.Credential

	mu      sync.Mutex
	running bool
}

// Available reports whether the PostgreSQL binaries are installed: nil if
// Start can find them, else why not. It lets a benchmark that measures
// PostgreSQL beside other things leave PostgreSQL out instead of skipping
// everything.
func Available() error {
	_, err := findBinaries()
	return err
}

// Start starts a private PostgreSQL server and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := findBinaries()
	if err != nil {
		if os.Getenv("SESSION_REQUIRE_POSTGRES") != "" {
			t.Fatalf("PostgreSQL binaries not found, and SESSION_REQUIRE_POSTGRES is set: %v", err)
		}
		t.Skipf("PostgreSQL binaries not found (%v); install them (apt-get install postgresql) to run the PostgreSQL tests", err)
	}
	s, err := launch(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Launch starts a private PostgreSQL server as Start does, for a program
// rather than a test (the demo's -embedded flag): the caller must call
// Close. It fails when the binaries are missing.
func Launch() (*Server, error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL binaries not found (%w); install them (apt-get install postgresql)", err)
	}
	return launch(bin)
}

func launch(bin string) (_ *Server, err error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, data: filepath.Join(dir, "data")}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if os.Geteuid() == 0 {
		cred, err := unprivileged()
		if err != nil {
			return nil, fmt.Errorf("running as root and no unprivileged user to run PostgreSQL as: %w", err)
		}
		s.cred = cred
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	out, err := s.run("initdb", "-D", s.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("starting postgres: %w", lastErr)
	}
	s.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
	return s, nil
}

// Close stops the server and removes its data directory.
func (s *Server) Close() {
	s.Stop()
	os.RemoveAll(s.dir)
}

// Stop stops the server (fast shutdown) and waits for it to exit. Stopping
// a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return
	}
	_, _ = s.run("pg_ctl", "stop", "-D", s.data, "-m", "fast", "-w", "-t", "30")
	s.running = false
}

// Restart starts a stopped server again on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		return
	}
	if err := s.start(); err != nil {
		t.Fatalf("restarting postgres: %v", err)
	}
}

func (s *Server) start() error {
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
		s.Port, filepath.Dir(s.data))
	out, err := s.run("pg_ctl", "start", "-D", s.data, "-w", "-t", "60", "-l", filepath.Join(filepath.Dir(s.data), "log"), "-o", opts)
	if err != nil {
		logText, _ := os.ReadFile(filepath.Join(filepath.Dir(s.data), "log"))
		return fmt.Errorf("%v\n%s\n%s", err, out, logText)
	}
	if err := waitTCP(s.Port); err != nil {
		return err
	}
	s.mu.Lock()
	s.running = true
	s.mu.Unlock()
	return nil
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = filepath.Dir(s.data)
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
		cmd.Env = append(os.Environ(), "HOME="+filepath.Dir(s.data))
	}
	return cmd.CombinedOutput()
}

func waitTCP(port int) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("postgres did not accept connections on port %d within 10s", port)
}

// findBinaries returns the directory holding initdb, pg_ctl and postgres.
func findBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			dir = filepath.Dir(resolved)
		}
		if haveAll(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs))) // newest major first (string order is fine for 10..99)
	for _, d := range dirs {
		if haveAll(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("initdb, pg_ctl and postgres are neither on PATH nor in /usr/lib/postgresql/*/bin")
}

func haveAll(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// unprivileged returns the credentials of the user the server runs as when
// the test runs as root.
func unprivileged() (*syscall.Credential, error) {
	var lastErr error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			lastErr = err
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			lastErr = fmt.Errorf("user %s: bad uid/gid %q/%q", name, u.Uid, u.Gid)
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
