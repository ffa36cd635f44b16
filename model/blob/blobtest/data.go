package blobtest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
)

// patternBlock is the period of the base bytes; every block gets its own
// 8-byte header so that no two blocks of a stream are equal.
const patternBlock = 64 << 10

// Pattern returns a reader of n pseudo-random bytes fixed by seed. The
// bytes are generated as they are read, at memory-copy speed, so tests
// and benchmarks can stream gigabytes without holding them.
func Pattern(seed uint64, n int64) io.Reader {
	block := make([]byte, patternBlock)
	rng := rand.NewChaCha8([32]byte{0: byte(seed), 1: byte(seed >> 8), 2: byte(seed >> 16), 3: byte(seed >> 24),
		4: byte(seed >> 32), 5: byte(seed >> 40), 6: byte(seed >> 48), 7: byte(seed >> 56)})
	_, _ = rng.Read(block)
	return &pattern{block: block, seed: seed, n: n}
}

type pattern struct {
	block []byte
	seed  uint64
	off   int64
	n     int64
}

func (r *pattern) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	total := 0
	for len(p) > 0 && r.off < r.n {
		bi, in := r.off/patternBlock, int(r.off%patternBlock)
		seg := min(len(p), patternBlock-in)
		if rem := r.n - r.off; int64(seg) > rem {
			seg = int(rem)
		}
		k := copy(p[:seg], r.block[in:])
		if in < 8 {
			var hdr [8]byte
			binary.LittleEndian.PutUint64(hdr[:], uint64(bi)*0x9E3779B97F4A7C15^r.seed)
			copy(p[:k], hdr[in:])
		}
		p = p[k:]
		r.off += int64(k)
		total += k
	}
	return total, nil
}

// PatternBytes returns Pattern(seed, n) in memory, for small n.
func PatternBytes(seed uint64, n int) []byte {
	b, _ := io.ReadAll(Pattern(seed, int64(n)))
	return b
}

// PatternSHA256 returns the lowercase hex SHA-256 of Pattern(seed, n),
// computed by streaming.
func PatternSHA256(seed uint64, n int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, Pattern(seed, n))
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256 returns the lowercase hex SHA-256 of b.
func SHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// FailAfter returns a reader that yields the first n bytes of r and then
// fails with err, like a client link dropping mid-request.
func FailAfter(r io.Reader, n int64, err error) io.Reader {
	return io.MultiReader(io.LimitReader(r, n), errReader{err})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// ErrFlaky is the read error the suite injects with FailAfter.
var ErrFlaky = errors.New("blobtest: link dropped")
