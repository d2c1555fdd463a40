package session_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxyMode is what the fault proxy does with traffic.
type proxyMode int

const (
	modePass      proxyMode = iota // forward both ways
	modeDelay                      // forward both ways, each chunk after a delay
	modeBlackhole                  // accept and read, never forward or answer
	modeReset                      // reset every connection, old and new
	modeRefuse                     // reset new connections at once (as a closed port would)
	modeDropReply                  // forward commands, drop the replies
)

// faultProxy sits between a Redis client and a server on loopback and
// misbehaves on demand. It stops when the test ends.
type faultProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mode   atomic.Int64
	delay  atomic.Int64 // nanoseconds, for modeDelay

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

// set switches the mode; modeReset also drops every open connection.
func (p *faultProxy) set(m proxyMode) {
	p.mode.Store(int64(m))
	if m == modeReset {
		p.mu.Lock()
		for c := range p.conns {
			reset(c)
		}
		p.mu.Unlock()
	}
}

func (p *faultProxy) setDelay(d time.Duration) {
	p.delay.Store(int64(d))
	p.set(modeDelay)
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST, as a crashed server would
	}
	_ = c.Close()
}

func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *faultProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		switch proxyMode(p.mode.Load()) {
		case modeReset, modeRefuse:
			reset(client)
			continue
		}
		server, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			reset(client)
			continue
		}
		if !p.track(client) || !p.track(server) {
			reset(client)
			reset(server)
			return
		}
		p.wg.Add(2)
		go p.pump(client, server, false)
		go p.pump(server, client, true)
	}
}

// pump copies one direction, chunk by chunk, obeying the mode of the moment.
func (p *faultProxy) pump(from, to net.Conn, isReply bool) {
	defer p.wg.Done()
	defer func() {
		reset(from)
		reset(to)
		p.untrack(from)
		p.untrack(to)
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			switch proxyMode(p.mode.Load()) {
			case modeReset:
				return
			case modeBlackhole:
				continue
			case modeDropReply:
				if isReply {
					continue
				}
			case modeDelay:
				time.Sleep(time.Duration(p.delay.Load()))
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, a reset, or the proxy closing
		}
	}
}

func (p *faultProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		reset(c)
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
