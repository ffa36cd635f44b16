package blob_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/filegate/filegate/model/blob"
)

// sink records the writes it gets and fails the test when a copy hands it
// the reader instead, as io.Copy would through ReadFrom.
type sink struct {
	t      *testing.T
	buf    bytes.Buffer
	writes []int
}

func (s *sink) Write(p []byte) (int, error) {
	s.writes = append(s.writes, len(p))
	return s.buf.Write(p)
}

func (s *sink) ReadFrom(io.Reader) (int64, error) {
	s.t.Fatal("Copy handed the body to ReadFrom, which copies in 32 KiB pieces")
	return 0, nil
}

// fileLike stands for a blob reader: it offers WriteTo, which Copy must
// not take either.
type fileLike struct{ r *bytes.Reader }

func (f fileLike) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f fileLike) WriteTo(io.Writer) (int64, error) {
	panic("Copy used WriteTo")
}

func TestCopySendsLargePieces(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), (9<<20)/16+7)
	tests := []struct {
		name     string
		src      io.Reader
		want     []byte
		maxWrite int
		minFirst int
	}{
		{"whole large body", fileLike{bytes.NewReader(body)}, body, 4 << 20, 4 << 20},
		{"range of a large body", &io.LimitedReader{R: fileLike{bytes.NewReader(body)}, N: 5 << 20}, body[:5<<20], 4 << 20, 4 << 20},
		{"small range", &io.LimitedReader{R: fileLike{bytes.NewReader(body)}, N: 700 << 10}, body[:700<<10], 256 << 10, 256 << 10},
		{"empty", fileLike{bytes.NewReader(nil)}, nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{t: t}
			n, err := blob.Copy(s, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(tt.want)) || !bytes.Equal(s.buf.Bytes(), tt.want) {
				t.Fatalf("copied %d bytes, want %d, equal %v", n, len(tt.want), bytes.Equal(s.buf.Bytes(), tt.want))
			}
			for _, w := range s.writes {
				if w > tt.maxWrite {
					t.Fatalf("a write of %d bytes, want at most %d", w, tt.maxWrite)
				}
			}
			if len(s.writes) > 0 && s.writes[0] < tt.minFirst {
				t.Fatalf("first write %d bytes, want %d: the copy went in small pieces", s.writes[0], tt.minFirst)
			}
		})
	}
}
