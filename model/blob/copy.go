package blob

import (
	"io"
	"sync"
)

// Buffers of Copy: bodies above 1 MiB take 4 MiB ones, smaller bodies
// 256 KiB ones.
var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
	largeBufs = sync.Pool{New: func() any { b := make([]byte, 4<<20); return &b }}
)

// Copy sends a blob body to dst in reads and writes of up to 4 MiB, and
// returns what io.Copy would. A download server's usual paths copy in
// 32 KiB pieces or hand the file to sendfile; on loopback here a 1 GiB
// GET measured 1.6–1.9 GB/s with 32 KiB copies, 2.6 GB/s with sendfile
// and 3.3–4.3 GB/s with 4 MiB copies (cmd/filegate-bench, same client),
// because the cost of a large transfer is the number of system calls, not
// the bytes copied. A body bounded by an *io.LimitedReader of at most
// 1 MiB, as http.ServeContent passes for a small file or range, takes a
// small buffer instead.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	pool := &largeBufs
	if lr, ok := src.(*io.LimitedReader); ok && lr.N <= 1<<20 {
		pool = &smallBufs
	}
	b := pool.Get().(*[]byte)
	defer pool.Put(b)
	// The wrappers hide ReadFrom and WriteTo, which would take the copy
	// back to 32 KiB pieces or sendfile.
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *b)
}
