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
	// bufSize is the write (and hash read) size: big enough that syscalls
	// cost next to nothing, small enough that thousands of concurrent
	// uploads fit in memory (a pipe holds two buffers).
	bufSize = 256 << 10
	// writebackEvery asks the kernel to start writing dirty pages to disk
	// after that many bytes, so that less is left for the commit's fsync.
	writebackEvery = 1 << 20
)

// errAborted stops the hasher of a pipe being abandoned.
var errAborted = errors.New("localblob: write abandoned")

// pipe streams bytes into a file and a SHA-256 of them. The producer
// writes into the file through one buffer; a hasher goroutine reads the
// bytes back from the file (the page cache, a memory copy) and hashes them.
// Writing is not held up by hashing, so at commit the fsync, which mostly
// waits on the device, overlaps with the hash catching up instead of
// following it. The hash covers exactly the bytes that reached the file. A
// pipe is used by one producer goroutine.
type pipe struct {
	ctx context.Context
	s   *Store
	f   *os.File
	h   hash.Hash
	off int64 // file offset of the first byte this pipe writes

	buf     *[]byte // the producer's buffer, nil once released
	n       int     // bytes filled in buf
	flushed int64   // bytes written, as the producer sees it
	hinted  int64   // bytes handed to startWriteback
	started bool    // hasher running
	ended   bool    // endWrites called
	tried   bool    // direct mode was considered (at the first full buffer)

	kick  chan struct{} // capacity 1: "written moved"
	hdone chan struct{}

	mu      sync.Mutex
	written int64 // bytes in the file, for the hasher
	wdone   bool  // no more writes will come
	werr    error // first write error (or errAborted)
	herr    error // hasher's read error
	// d is set once the pipe writes direct (see direct.go); the hasher
	// reads back only what was written before, and takes the rest from
	// the buffers.
	d *directPath
}

// newPipe writes at f's current offset, which must be off.
func newPipe(ctx context.Context, s *Store, f *os.File, h hash.Hash, off int64) *pipe {
	return &pipe{ctx: ctx, s: s, f: f, h: h, off: off, buf: s.bufs.Get().(*[]byte)}
}

func (p *pipe) writeErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.werr
}

// setWriteErr records err unless an error is recorded already.
func (p *pipe) setWriteErr(err error) {
	p.mu.Lock()
	if p.werr == nil {
		p.werr = err
	}
	p.mu.Unlock()
}

// flush writes the buffer to the file. At the first full buffer it tries
// direct mode (see direct.go): that buffer is written through the cache
// up to its last aligned offset, and the rest moves into a direct buffer.
func (p *pipe) flush() error {
	if p.d != nil {
		return p.flushDirect()
	}
	if p.n == 0 {
		return p.writeErr()
	}
	if !p.tried && p.n == len(*p.buf) {
		p.tried = true
		if p.s.direct && !p.started {
			// Nothing is written yet. This first buffer goes through the
			// cache, hashed here, up to the last aligned offset in it
			// (bytes a stalled client sent are then in the file at once,
			// as before), and the pipe starts after it.
			cut := p.n - int((p.off+int64(p.n))%directAlign)
			k, err := p.f.Write((*p.buf)[:cut])
			p.h.Write((*p.buf)[:k])
			if err != nil {
				p.n = 0
				p.setWriteErr(mapErr(err))
				return p.writeErr()
			}
			p.off += int64(cut)
			p.n = copy(*p.buf, (*p.buf)[cut:p.n])
			if p.startDirect() {
				nb := p.s.dbufs.Get().(*[]byte)
				p.n = copy(*nb, (*p.buf)[:p.n])
				p.s.bufs.Put(p.buf)
				p.buf = nb
				return nil
			}
			if p.n == 0 {
				return nil
			}
		}
	}
	err := p.writeOut((*p.buf)[:p.n])
	p.n = 0
	return err
}

// startHasher starts the goroutine that hashes what is written.
func (p *pipe) startHasher() {
	p.started = true
	p.kick = make(chan struct{}, 1)
	p.hdone = make(chan struct{})
	go p.hasher()
}

// writeOut writes b to the file, starting the hasher on first use, and
// tells the hasher how far the file now goes.
func (p *pipe) writeOut(b []byte) error {
	if err := p.writeErr(); err != nil {
		return err
	}
	if !p.started {
		p.startHasher()
	}
	k, err := p.f.Write(b)
	p.flushed += int64(k)
	p.mu.Lock()
	p.written = p.flushed
	if err != nil && p.werr == nil {
		p.werr = mapErr(err)
	}
	err = p.werr
	p.mu.Unlock()
	p.poke()
	if p.flushed-p.hinted >= writebackEvery {
		startWriteback(int(p.f.Fd()), p.off+p.hinted, p.flushed-p.hinted)
		p.hinted = p.flushed
	}
	return err
}

func (p *pipe) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// hasher hashes the file from off as far as the producer has written,
// then, in direct mode, the direct buffers, until the producer is done or
// gives up. In direct mode it always drains the buffers, even after a
// read error or an abort, because the producer waits for them.
func (p *pipe) hasher() {
	defer close(p.hdone)
	rb := p.s.bufs.Get().(*[]byte)
	defer p.s.bufs.Put(rb)
	var hashed int64
	failed := false
	for {
		p.mu.Lock()
		written, wdone, werr, d := p.written, p.wdone, p.werr, p.d
		p.mu.Unlock()
		if d != nil && (hashed >= written || failed || werr == errAborted) {
			p.hashDirect(d)
			return
		}
		if werr == errAborted {
			return
		}
		if hashed < written && !failed {
			want := min(int64(len(*rb)), written-hashed)
			k, err := p.f.ReadAt((*rb)[:want], p.off+hashed)
			p.h.Write((*rb)[:k])
			hashed += int64(k)
			if err != nil && int64(k) < want {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF // truncated behind our back
				}
				p.mu.Lock()
				p.herr = err
				p.mu.Unlock()
				failed = true
			}
			continue
		}
		if wdone {
			return
		}
		<-p.kick
	}
}

// write copies b into the file. It returns ctx's error or the first write
// error.
func (p *pipe) write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		if p.n == 0 && len(b) >= len(*p.buf) && p.tried && p.d == nil {
			// A whole buffer's worth: write it from b, sparing a copy.
			if err := p.ctx.Err(); err != nil {
				return n, err
			}
			k := len(b) - len(b)%len(*p.buf)
			if err := p.writeOut(b[:k]); err != nil {
				return n, err
			}
			n += k
			b = b[k:]
			continue
		}
		k := copy((*p.buf)[p.n:], b)
		p.n += k
		n += k
		b = b[k:]
		if p.n == len(*p.buf) {
			if err := p.ctx.Err(); err != nil {
				return n, err
			}
			if err := p.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// readFrom reads r to EOF into the file, checking ctx between reads. It
// returns how many bytes it read and r's or ctx's error (never io.EOF); it
// stops early with a nil error when a write failed, which endWrites then
// reports.
func (p *pipe) readFrom(r io.Reader) (int64, error) {
	var n int64
	for {
		if err := p.ctx.Err(); err != nil {
			return n, err
		}
		k, err := r.Read((*p.buf)[p.n:])
		p.n += k
		n += int64(k)
		if p.n == len(*p.buf) {
			if p.flush() != nil {
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

// endWrites writes what is buffered and tells the hasher no more is
// coming. It returns the first write error.
func (p *pipe) endWrites() error {
	if p.ended {
		return p.writeErr()
	}
	p.ended = true
	if p.d != nil {
		err := p.endDirect()
		p.release()
		return err
	}
	if !p.started && p.n > 0 {
		// Small blob, one buffer: write and hash it without a goroutine.
		k, err := p.f.Write((*p.buf)[:p.n])
		p.h.Write((*p.buf)[:k])
		p.flushed += int64(k)
		p.n = 0
		if err != nil {
			p.mu.Lock()
			p.werr = mapErr(err)
			p.mu.Unlock()
		}
	}
	err := p.flush()
	p.release()
	return err
}

// release marks the writes done and gives back the producer's buffer.
func (p *pipe) release() {
	p.mu.Lock()
	p.wdone = true
	p.mu.Unlock()
	if p.started {
		p.poke()
	}
	if p.buf != nil {
		if p.d != nil {
			p.s.dbufs.Put(p.buf)
		} else {
			p.s.bufs.Put(p.buf)
		}
		p.buf = nil
	}
}

// waitHash waits for the hasher to cover every written byte. It returns
// the hasher's read error.
func (p *pipe) waitHash() error {
	if p.started {
		<-p.hdone
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.herr
}

// abort abandons the pipe: the hasher stops where it is. Safe to call
// more than once and after endWrites.
func (p *pipe) abort() {
	p.ended = true
	p.mu.Lock()
	p.werr = errAborted
	p.mu.Unlock()
	if p.d != nil {
		// No direct write may land after the caller removes or
		// truncates the file.
		p.shutDirect()
		p.d.wg.Wait()
	}
	p.release()
	if p.started {
		<-p.hdone
	}
}
