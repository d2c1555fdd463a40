package pgtest_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sessionkit/session/pgstore/pgtest"
)

func TestStartRunsAnUnprivilegedServerThatStops(t *testing.T) {
	srv := pgtest.Start(t)
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port)))
	if err != nil {
		t.Fatalf("the server does not accept connections: %v", err)
	}
	c.Close()
	if os.Geteuid() == 0 {
		pid := postmasterPID(t, srv)
		status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "Uid:") && strings.Fields(line)[1] == "0" {
				t.Errorf("postgres runs as root: %s", line)
			}
		}
	}
	srv.Stop()
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port))); err == nil {
		c.Close()
		t.Error("the server still accepts connections after Stop")
	}
	srv.Restart(t)
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port))); err != nil {
		t.Errorf("no connection after Restart: %v", err)
	} else {
		c.Close()
	}
}

// postmasterPID finds the server's process: the only postgres process whose
// command line names this server's port.
func postmasterPID(t *testing.T, srv *pgtest.Server) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if !strings.HasSuffix(args[0], "postgres") {
			continue
		}
		for i, a := range args {
			if a == "-p" && i+1 < len(args) && args[i+1] == strconv.Itoa(srv.Port) {
				pid, _ := strconv.Atoi(filepath.Base(d))
				return pid
			}
		}
	}
	t.Fatal("no postgres process for the server's port")
	return 0
}
