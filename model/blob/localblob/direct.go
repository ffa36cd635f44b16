package localblob

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// With Options.DirectIO, large blobs are written with O_DIRECT: the bytes
// go from the pipe's buffers to the device without a copy into the page
// cache, and the commit's fsync then finds only metadata and the tail left
// to write. A buffered write of 1 GiB can spend a third of the machine's
// CPU copying pages (copy_folio_from_iter) and the fsync then waits for
// all of it to reach the disk; writing direct, the device works while the
// next buffers arrive, and the hash is taken from the same buffers instead
// of being read back from the file. MinIO writes large objects the same
// way. It is not the default: a file just written is then not in the page
// cache, and on the benchmark VM its first GET read at 0.4-1.7 GB/s from
// the device instead of about 2 GB/s from the cache.
//
// A pipe goes direct once its first buffer (bufSize) has filled, and only
// for what follows it: smaller blobs are unchanged, and the first buffer
// reaches the file at once, as before. Only whole blocks go direct; the
// first buffer is written up to its last aligned offset (an upload resumed
// at an odd offset), and the tail after the last whole block goes through
// the page cache. Where the filesystem refuses O_DIRECT (found when
// the store opens, or when a file's flag cannot be set) everything is
// buffered.

const (
	// directAlign is the alignment of direct writes' offsets, lengths and
	// memory: a page, which covers every device's logical block.
	directAlign = 4096
	// directBufSize is one direct write.
	directBufSize = 1 << 20
	// directInFlight bounds the buffers a pipe has handed to its writers
	// and hasher but not got back, which bounds its memory
	// ((directInFlight+1) MiB) and applies back-pressure to the sender.
	directInFlight = 4
	// directWriters is how many writes one pipe has at the device at
	// once: two keep it busy while one write completes.
	directWriters = 2
)

// newDirectBuf returns a directBufSize buffer whose first byte is
// directAlign-aligned, as O_DIRECT requires of memory.
func newDirectBuf() *[]byte {
	raw := make([]byte, directBufSize+directAlign)
	skip := 0
	if r := addrOf(raw) % directAlign; r != 0 {
		skip = int(directAlign - r)
	}
	b := raw[skip : skip+directBufSize : skip+directBufSize]
	return &b
}

// addrOf is the address of b's first byte.
func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// directPath is a pipe's direct mode: the producer hands full buffers to
// directWriters writer goroutines (write order does not matter, the
// offsets are fixed) and, in the same order, to the hasher. A buffer goes
// back to the store's pool once both are done with it.
type directPath struct {
	wq    chan *directChunk
	hq    chan *directChunk
	slots chan struct{} // one per chunk in flight
	wg    sync.WaitGroup
	shut  bool // wq and hq closed
}

// directChunk is one buffer on its way to the file and the hash.
type directChunk struct {
	s    *Store
	d    *directPath
	buf  *[]byte // nil for a tail, whose bytes are in b only
	b    []byte
	off  int64 // file offset; < 0: hash only (the tail, written buffered)
	refs atomic.Int32
}

// done drops one reference; the last gives the buffer back.
func (c *directChunk) done() {
	if c.refs.Add(-1) != 0 {
		return
	}
	if c.buf != nil {
		c.s.dbufs.Put(c.buf)
	}
	<-c.d.slots
}

// startDirect switches p to direct mode if the file is aligned at the
// pipe's position and takes O_DIRECT. It returns whether it did.
func (p *pipe) startDirect() bool {
	// The hasher must never read the file back once O_DIRECT is set (the
	// read would be direct too, and unaligned), so only a pipe that has
	// written nothing yet goes direct.
	if !p.s.direct || p.started || p.flushed != 0 || p.off%directAlign != 0 {
		return false
	}
	if err := setDirect(p.f, true); err != nil {
		return false
	}
	d := &directPath{
		wq:    make(chan *directChunk, directInFlight),
		hq:    make(chan *directChunk, directInFlight+1),
		slots: make(chan struct{}, directInFlight+1),
	}
	for range directWriters {
		d.wg.Add(1)
		go p.directWriter(d)
	}
	p.mu.Lock()
	p.d = d
	p.mu.Unlock()
	if !p.started {
		p.startHasher()
	}
	p.poke()
	return true
}

// directWriter writes chunks until the queue closes. After a failed write
// (or an abort) it only passes chunks on, so that nothing waits for it.
func (p *pipe) directWriter(d *directPath) {
	defer d.wg.Done()
	for c := range d.wq {
		if p.writeErr() == nil {
			if _, err := p.f.WriteAt(c.b, c.off); err != nil {
				p.setWriteErr(mapErr(err))
			} else {
				p.s.directWrites.Add(1)
			}
		}
		c.done()
	}
}

// submitDirect hands b, len(b) a multiple of directAlign, to the writers
// and the hasher. buf is the pooled buffer b lies in, or nil.
func (p *pipe) submitDirect(buf *[]byte, b []byte, hashOnly bool) {
	d := p.d
	d.slots <- struct{}{}
	c := &directChunk{s: p.s, d: d, buf: buf, b: b, off: -1}
	if hashOnly {
		c.refs.Store(1)
	} else {
		c.off = p.off + p.flushed
		c.refs.Store(2)
		d.wq <- c
	}
	d.hq <- c
	p.flushed += int64(len(b))
}

// flushDirect submits the producer's full buffer and takes a fresh one.
func (p *pipe) flushDirect() error {
	if err := p.writeErr(); err != nil {
		return err
	}
	p.submitDirect(p.buf, (*p.buf)[:p.n], false)
	p.buf = p.s.dbufs.Get().(*[]byte)
	p.n = 0
	return nil
}

// endDirect writes what the producer holds: its aligned part direct, then,
// once every direct write is done, the rest through the page cache. It
// returns the first write error.
func (p *pipe) endDirect() error {
	d := p.d
	aligned := p.n - p.n%directAlign
	var tail []byte
	if aligned < p.n {
		tail = append([]byte(nil), (*p.buf)[aligned:p.n]...)
	}
	if aligned > 0 && p.writeErr() == nil {
		p.submitDirect(p.buf, (*p.buf)[:aligned], false)
		p.buf = nil
	}
	p.n = 0
	tailOff := p.off + p.flushed
	if tail != nil {
		p.submitDirect(nil, tail, true)
	}
	p.shutDirect()
	d.wg.Wait()
	if err := p.writeErr(); err != nil {
		return err
	}
	if tail == nil {
		return nil
	}
	if err := setDirect(p.f, false); err != nil {
		p.setWriteErr(err)
		return err
	}
	if _, err := p.f.WriteAt(tail, tailOff); err != nil {
		p.setWriteErr(mapErr(err))
	}
	return p.writeErr()
}

// shutDirect closes the queues: the writers and the hasher finish what
// they hold and stop.
func (p *pipe) shutDirect() {
	if d := p.d; d != nil && !d.shut {
		d.shut = true
		close(d.wq)
		close(d.hq)
	}
}

// hashDirect hashes the chunks in the order the producer sent them, or
// only hands them back once the pipe is aborted.
func (p *pipe) hashDirect(d *directPath) {
	for c := range d.hq {
		if p.writeErr() != errAborted {
			p.h.Write(c.b)
		}
		c.done()
	}
}
