package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress reports an upload: a bar redrawn in place with rate and ETA on
// a terminal, a plain line every tenth of the file (or every 10 s)
// otherwise. A nil *progress reports nothing.
type progress struct {
	w   io.Writer
	tty bool

	mu       sync.Mutex
	name     string
	total    int64
	sent     int64 // bytes confirmed or in flight
	base     int64 // where this run started, for the rate
	started  time.Time
	drawn    time.Time
	lastTick int64
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) start(name string, total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.total, p.sent, p.base, p.lastTick = name, total, 0, 0, -1
	p.started = time.Now()
	p.drawn = time.Time{}
}

// resumed sets the position the server confirmed.
func (p *progress) resumed(off int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sent == 0 && p.base == 0 && off > 0 {
		p.base = off
		p.started = time.Now()
		if !p.tty {
			fmt.Fprintf(p.w, "%s: resuming at %s of %s\n", p.name, human(off), human(p.total))
		}
	}
	p.sent = off
	p.draw(false)
}

func (p *progress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent += int64(n)
	p.draw(false)
}

// reader counts bytes as the request body is read.
func (p *progress) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return &countingReader{r: r, p: p}
}

type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.p.add(n)
	}
	return n, err
}

func (p *progress) note(msg string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	fmt.Fprintf(p.w, "%s: %s\n", p.name, msg)
}

func (p *progress) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent = p.total
	p.draw(true)
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) abort() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && !p.drawn.IsZero() {
		fmt.Fprintln(p.w)
	}
}

// draw renders the bar (at most 5 times a second) or a plain line (at
// each tenth, or after 10 s of silence). p.mu is held.
func (p *progress) draw(final bool) {
	now := time.Now()
	pct := int64(100)
	if p.total > 0 {
		pct = min(100, p.sent*100/p.total)
	}
	elapsed := now.Sub(p.started).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.sent-p.base) / elapsed
	}
	eta := "--:--"
	if rate > 0 && p.sent < p.total {
		eta = clock(time.Duration(float64(p.total-p.sent) / rate * float64(time.Second)))
	} else if p.sent >= p.total {
		eta = "0:00"
	}
	if p.tty {
		if !final && now.Sub(p.drawn) < 200*time.Millisecond {
			return
		}
		p.drawn = now
		const width = 24
		fill := int(pct * width / 100)
		bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
		if fill < width && fill > 0 {
			bar = bar[:fill-1] + ">" + bar[fill:]
		}
		fmt.Fprintf(p.w, "\r%-24.24s %3d%% [%s] %s/%s %s/s ETA %s\x1b[K",
			p.name, pct, bar, human(p.sent), human(p.total), human(int64(rate)), eta)
		return
	}
	tick := pct / 10
	if !final && tick == p.lastTick && now.Sub(p.drawn) < 10*time.Second {
		return
	}
	if final && p.lastTick == 10 {
		return
	}
	p.lastTick, p.drawn = tick, now
	fmt.Fprintf(p.w, "%s: %d%% (%d/%d bytes), %s/s, ETA %s\n", p.name, pct, p.sent, p.total, human(int64(rate)), eta)
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func clock(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}
