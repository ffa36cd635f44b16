package localblob

import (
	"context"
	"errors"
	"hash"
	"io"
	"os"
	"sync"
)

const (
	// bufSize is the unit handed between pipeline stages. Each pipeline
	// holds at most pipeDepth of them, so a writer costs 4 MiB of memory
	// however large the blob.
	bufSize   = 1 << 20
	pipeDepth = 4
	// writebackEvery asks the kernel to start writing dirty pages to disk
	// after that many bytes, so the fsync at commit finds little left to do
	// and the disk works while we still hash and receive.
	writebackEvery = 8 << 20
)

// chunk is one filled buffer travelling down the pipeline.
type chunk struct {
	buf *[]byte
	n   int
}

// pipe streams bytes into a file and a hash at once. The producer fills
// buffers (write or readFrom); a write stage puts them in the file and a
// hash stage hashes what the write stage wrote, each in its own goroutine,
// so receiving, writing and hashing overlap. The hash only ever covers bytes
// that reached the file. A pipe is used by one producer goroutine.
type pipe struct {
	ctx context.Context
	s   *Store
	f   *os.File
	h   hash.Hash
	off int64 // file offset of the first byte this pipe writes

	cur     *[]byte // buffer being filled, nil when none
	curN    int
	held    int // buffers taken from the pool
	started bool
	closed  bool

	free    chan *[]byte
	toWrite chan chunk
	toHash  chan chunk
	done    chan struct{}

	mu      sync.Mutex
	err     error // first write error
	written int64 // bytes the write stage put in the file
}

// newPipe writes at f's current offset, which must be off.
func newPipe(ctx context.Context, s *Store, f *os.File, h hash.Hash, off int64) *pipe {
	return &pipe{ctx: ctx, s: s, f: f, h: h, off: off, free: make(chan *[]byte, pipeDepth)}
}

func (p *pipe) werr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Written returns how many bytes reached the file; valid after finish.
func (p *pipe) Written() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.written
}

func (p *pipe) getBuf() *[]byte {
	select {
	case b := <-p.free:
		return b
	default:
	}
	if p.held < pipeDepth {
		p.held++
		return p.s.bufs.Get().(*[]byte)
	}
	return <-p.free
}

// send hands the current buffer to the write stage.
func (p *pipe) send() error {
	if err := p.ctx.Err(); err != nil {
		return err
	}
	if err := p.werr(); err != nil {
		return err
	}
	if !p.started {
		p.started = true
		p.toWrite = make(chan chunk, pipeDepth)
		p.toHash = make(chan chunk, pipeDepth)
		p.done = make(chan struct{})
		go p.writeStage()
		go p.hashStage()
	}
	p.toWrite <- chunk{buf: p.cur, n: p.curN}
	p.cur, p.curN = nil, 0
	return nil
}

func (p *pipe) writeStage() {
	defer close(p.toHash)
	var written, flushed int64
	fd := int(p.f.Fd())
	for c := range p.toWrite {
		if p.werr() != nil {
			c.n = 0
		} else {
			n, err := p.f.Write((*c.buf)[:c.n])
			c.n = n
			written += int64(n)
			p.mu.Lock()
			p.written = written
			if err != nil && p.err == nil {
				p.err = err
			}
			p.mu.Unlock()
			if written-flushed >= writebackEvery {
				startWriteback(fd, p.off+flushed, written-flushed)
				flushed = written
			}
		}
		p.toHash <- c
	}
}

func (p *pipe) hashStage() {
	defer close(p.done)
	for c := range p.toHash {
		p.h.Write((*c.buf)[:c.n])
		p.free <- c.buf
	}
}

// write copies b into the pipeline. It returns ctx's error or the first
// write error.
func (p *pipe) write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		if p.cur == nil {
			p.cur = p.getBuf()
		}
		k := copy((*p.cur)[p.curN:], b)
		p.curN += k
		n += k
		b = b[k:]
		if p.curN == len(*p.cur) {
			if err := p.send(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// readFrom reads r to EOF into the pipeline, checking ctx between reads.
// It returns how many bytes it read and the read or ctx error (never
// io.EOF); it stops early with a nil error when a write failed, which
// finish then reports.
func (p *pipe) readFrom(r io.Reader) (int64, error) {
	var n int64
	for {
		if err := p.ctx.Err(); err != nil {
			return n, err
		}
		if p.cur == nil {
			p.cur = p.getBuf()
		}
		k, err := r.Read((*p.cur)[p.curN:])
		p.curN += k
		n += int64(k)
		if p.curN == len(*p.cur) {
			if serr := p.send(); serr != nil {
				if serr == p.ctx.Err() {
					return n, serr
				}
				return n, nil
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// finish writes what is buffered, waits for both stages and returns the
// buffers to the pool. It returns the first write error. When discard is
// true the buffered tail is dropped instead of written.
func (p *pipe) finish(discard bool) error {
	if p.closed {
		return p.werr()
	}
	p.closed = true
	if p.cur != nil && p.curN > 0 && !discard {
		if !p.started {
			// Small blob: one buffer, no goroutines needed.
			n, err := p.f.Write((*p.cur)[:p.curN])
			p.h.Write((*p.cur)[:n])
			p.mu.Lock()
			p.written += int64(n)
			if err != nil && p.err == nil {
				p.err = err
			}
			p.mu.Unlock()
		} else if p.werr() == nil {
			p.toWrite <- chunk{buf: p.cur, n: p.curN}
			p.cur = nil
		}
	}
	if discard {
		p.mu.Lock()
		if p.err == nil {
			p.err = errDiscarded
		}
		p.mu.Unlock()
	}
	if p.cur != nil {
		p.s.bufs.Put(p.cur)
		p.cur = nil
		p.held--
	}
	if p.started {
		close(p.toWrite)
		<-p.done
	}
	for p.held > 0 {
		p.s.bufs.Put(<-p.free)
		p.held--
	}
	err := p.werr()
	if err == errDiscarded {
		return nil
	}
	return err
}

// errDiscarded stops the write stage of a pipe being aborted.
var errDiscarded = errors.New("localblob: writer discarded")
