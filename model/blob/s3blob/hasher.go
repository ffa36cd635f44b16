package s3blob

import (
	"hash"
	"sync"
)

// hasher feeds the bytes of a writer's (or an Append's) buffers to a hash
// in order, in a goroutine of its own: SHA-256 is the largest CPU cost of
// a write, and off the goroutine that reads the client's bytes it runs on
// another core. Bytes are queued every hashChunk as they arrive, so the
// hash of a part is nearly done when the part is full, and the rest
// overlaps the part's upload.
//
// One buffer is filled at a time: to is how much of it is queued. The
// goroutine starts with the first queued chunk; bytes that never reach
// hashChunk before the end (a small blob) are hashed inline.
type hasher struct {
	h       hash.Hash
	q       chan hashJob
	done    chan struct{}
	nop     chan struct{} // closed: what an inline hash returns
	started bool
	closed  bool
	once    sync.Once
	to      int
}

type hashJob struct {
	b      []byte
	hashed chan struct{}
}

// hashChunk is how many new bytes are queued at once.
const hashChunk = 1 << 20

// maxChunksQueued sizes the queue; add blocks beyond it until the
// goroutine catches up, which bounds nothing but the queue itself (the
// buffers are bounded by the parts in flight).
const maxChunksQueued = 64

func newHasher(h hash.Hash) *hasher {
	nop := make(chan struct{})
	close(nop)
	return &hasher{h: h, q: make(chan hashJob, maxChunksQueued), done: make(chan struct{}), nop: nop}
}

func (hq *hasher) run() {
	defer close(hq.done)
	for j := range hq.q {
		hq.h.Write(j.b)
		close(j.hashed)
	}
}

// reset starts a new buffer whose first from bytes are not to be hashed
// (staged bytes hashed by an earlier Append).
func (hq *hasher) reset(from int) { hq.to = from }

// some queues the new bytes of buf (filled up to len(buf)) once there are
// hashChunk of them.
func (hq *hasher) some(buf []byte) {
	if len(buf)-hq.to >= hashChunk {
		hq.add(buf[hq.to:])
		hq.to = len(buf)
	}
}

// rest queues the remaining new bytes of buf and returns a channel closed
// once all of buf is hashed; until then buf must not change.
func (hq *hasher) rest(buf []byte) <-chan struct{} {
	b := buf[hq.to:]
	hq.to = len(buf)
	if !hq.started || hq.closed {
		hq.h.Write(b)
		return hq.nop
	}
	return hq.add(b)
}

func (hq *hasher) add(b []byte) <-chan struct{} {
	if hq.closed { // the queue is drained: inline keeps the order
		hq.h.Write(b)
		return hq.nop
	}
	if !hq.started {
		hq.started = true
		go hq.run()
	}
	j := hashJob{b: b, hashed: make(chan struct{})}
	hq.q <- j
	return j.hashed
}

// close waits until every queued byte is hashed; the hash is complete
// from then on. It may be called more than once; bytes given after it
// are hashed inline.
func (hq *hasher) close() {
	hq.closed = true
	hq.once.Do(func() { close(hq.q) })
	if hq.started {
		<-hq.done
	}
}
