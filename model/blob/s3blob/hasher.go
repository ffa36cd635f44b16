package s3blob

import (
	"hash"
	"sync"
)

// hasher feeds buffers to a hash in the order they are added, in a
// goroutine of its own: SHA-256 is the largest CPU cost of a write, and
// off the path that reads the client's bytes it runs on another core
// while the next part fills and the last one uploads.
type hasher struct {
	h    hash.Hash
	q    chan hashJob
	done chan struct{}
	once sync.Once
}

type hashJob struct {
	b      []byte
	hashed chan struct{}
}

func newHasher(h hash.Hash) *hasher {
	hq := &hasher{h: h, q: make(chan hashJob, maxPartsInFlight), done: make(chan struct{})}
	go hq.run()
	return hq
}

// maxPartsInFlight sizes the hasher's queue. A writer queues at most one
// buffer per part in flight (Concurrency), and add only blocks, briefly,
// for a Concurrency above it.
const maxPartsInFlight = 16

func (hq *hasher) run() {
	defer close(hq.done)
	for j := range hq.q {
		hq.h.Write(j.b)
		close(j.hashed)
	}
}

// add queues b, which must not change until the returned channel is
// closed.
func (hq *hasher) add(b []byte) <-chan struct{} {
	j := hashJob{b: b, hashed: make(chan struct{})}
	hq.q <- j
	return j.hashed
}

// close waits until every queued buffer is hashed; the hash is then
// complete. It may be called more than once, and on a nil hasher.
func (hq *hasher) close() {
	if hq == nil {
		return
	}
	hq.once.Do(func() { close(hq.q) })
	<-hq.done
}
