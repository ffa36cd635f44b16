package faults

import (
	"io"
	"net"
	"sync"
	"testing"
)

// proxy forwards TCP connections to a target and can cut the path: refuse
// resets every connection, open or new (a host that answers with RST);
// blackhole keeps connections open but lets nothing through (a network
// partition). Restoring the path resets the connections that lived through
// a blackhole, as TCP would time them out, and forwards new ones again.
type proxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	mode  string // "up", "refuse", "blackhole"
	conns map[net.Conn]bool
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, mode: "up", conns: map[net.Conn]bool{}}
	t.Cleanup(func() { l.Close(); p.set("refuse") })
	go p.accept()
	return p
}

// addr is the proxy's host:port.
func (p *proxy) addr() string { return p.l.Addr().String() }

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// set switches the mode; see proxy.
func (p *proxy) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if mode != "blackhole" {
		for c := range p.conns {
			reset(c)
		}
		clear(p.conns)
	}
	p.mode = mode
}

func (p *proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		if mode != "refuse" {
			p.conns[c] = true
		}
		p.mu.Unlock()
		switch mode {
		case "refuse":
			reset(c)
		case "blackhole":
			go io.Copy(io.Discard, c) // swallow, never answer
		default:
			go p.forward(c)
		}
	}
}

func (p *proxy) forward(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		reset(c)
		return
	}
	p.mu.Lock()
	if p.mode != "up" {
		p.mu.Unlock()
		reset(c)
		reset(s)
		return
	}
	p.conns[s] = true
	p.mu.Unlock()
	go p.pipe(s, c)
	p.pipe(c, s)
}

// pipe copies src to dst while the path is up; in a blackhole it reads
// and drops.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			up := p.mode == "up"
			p.mu.Unlock()
			if up {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					reset(src)
					return
				}
			}
		}
		if err != nil {
			p.mu.Lock()
			up := p.mode == "up"
			p.mu.Unlock()
			if up {
				reset(dst)
			}
			return
		}
	}
}
