package s3blob

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/filegate/filegate/model/blob"
)

var (
	errWriterDone = errors.New("s3blob: writer already committed or aborted")
	errTooLarge   = errors.New("s3blob: blob exceeds the 10,000 parts of a multipart upload")
)

// writer streams a blob into part buffers; see the package doc.
type writer struct {
	s      *Store
	ctx    context.Context // Create's, with cancel for Abort
	cancel context.CancelFunc
	key    string
	object string
	h      hash.Hash
	size   int64

	buf  *[]byte // the part being filled
	fill int

	uploadID string
	next     int32         // number of the next part
	sem      chan struct{} // one token per part in flight
	wg       sync.WaitGroup
	hq       *hasher // SHA-256 of the bytes, in order, off this goroutine

	mu    sync.Mutex
	parts []types.CompletedPart
	err   error // first failed part upload

	done bool
}

func newWriter(ctx context.Context, s *Store, key string) *writer {
	ctx, cancel := context.WithCancel(ctx)
	h := hashOf()
	return &writer{
		s: s, ctx: ctx, cancel: cancel, key: key, object: s.objectName(key),
		h: h, hq: newHasher(h), next: 1, sem: make(chan struct{}, s.concurrency),
	}
}

func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *writer) Write(p []byte) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	total := 0
	for len(p) > 0 {
		if w.buf == nil {
			if w.next > maxParts {
				return total, errTooLarge
			}
			w.newBuf()
		}
		k := copy((*w.buf)[w.fill:], p)
		w.fill += k
		w.size += int64(k)
		total += k
		p = p[k:]
		w.hq.some((*w.buf)[:w.fill])
		if w.fill == len(*w.buf) {
			if err := w.sendPart(); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// ReadFrom reads r to its end straight into the part buffers, without
// the copy io.Copy's own buffer would add.
func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	var total int64
	for {
		if w.buf == nil {
			if w.next > maxParts {
				var probe [1]byte
				if k, _ := io.ReadFull(r, probe[:]); k == 0 {
					return total, nil
				}
				return total, errTooLarge
			}
			w.newBuf()
		}
		k, err := r.Read((*w.buf)[w.fill:])
		w.fill += k
		w.size += int64(k)
		total += int64(k)
		w.hq.some((*w.buf)[:w.fill])
		if w.fill == len(*w.buf) {
			if perr := w.sendPart(); perr != nil {
				return total, perr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if err := w.usable(); err != nil {
			return total, err
		}
	}
}

// usable says why the writer takes no more bytes, if it does not.
func (w *writer) usable() error {
	if w.done {
		return errWriterDone
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	return w.failed()
}

func (w *writer) newBuf() {
	w.buf = w.s.getBuf(w.s.partSizeOf(w.next))
	w.fill = 0
	w.hq.reset(0)
}

// sendPart hands the full buffer to an upload goroutine, starting the
// multipart upload first if needed, and waits while Concurrency parts
// are in flight.
func (w *writer) sendPart() error {
	if w.uploadID == "" {
		out, err := w.s.c.CreateMultipartUpload(w.ctx, encrypted(w.s, &s3.CreateMultipartUploadInput{
			Bucket: &w.s.bucket, Key: &w.object, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		}))
		if err != nil {
			return mapErr(err)
		}
		w.uploadID = aws.ToString(out.UploadId)
		w.s.addLive(w.uploadID)
	}
	select {
	case w.sem <- struct{}{}:
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
	buf, n, num := w.buf, w.fill, w.next
	hashed := w.hq.rest((*buf)[:n])
	w.buf, w.fill = nil, 0
	w.next++
	w.wg.Add(1)
	go func() {
		// The hasher reads the buffer too: it goes back to the pool, and
		// the token with it, only when both are done.
		defer func() { <-hashed; w.s.putBuf(buf); <-w.sem; w.wg.Done() }()
		sum := crc32Of((*buf)[:n])
		out, err := w.s.c.UploadPart(w.ctx, &s3.UploadPartInput{
			Bucket: &w.s.bucket, Key: &w.object, UploadId: &w.uploadID,
			PartNumber: aws.Int32(num), ContentLength: aws.Int64(int64(n)),
			Body: bytes.NewReader((*buf)[:n]), ChecksumCRC32: sum,
		})
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			if w.err == nil {
				w.err = mapErr(err)
				w.cancel() // no point sending the other parts
			}
			return
		}
		w.parts = append(w.parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumCRC32: sum})
	}()
	return nil
}

// Commit sends what is buffered and makes the blob visible: one
// PutObject for a blob under one part, CompleteMultipartUpload otherwise.
// It returns blob.ErrUnavailable, ctx's error, or a part upload's error.
func (w *writer) Commit(ctx context.Context) (blob.Info, error) {
	if w.done {
		return blob.Info{}, errWriterDone
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	if err := w.ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	if w.uploadID == "" {
		var body []byte
		if w.buf != nil {
			body = (*w.buf)[:w.fill]
		}
		w.hq.rest(body)
		w.hq.close()
		sum := hex.EncodeToString(w.h.Sum(nil))
		info := blob.Info{Size: w.size, SHA256: sum}
		_, err := w.s.c.PutObject(ctx, encrypted(w.s, &s3.PutObjectInput{
			Bucket: &w.s.bucket, Key: &w.object, ContentLength: aws.Int64(int64(len(body))),
			Body: bytes.NewReader(body), Metadata: map[string]string{metaSHA256: sum}, ChecksumCRC32: crc32Of(body),
		}))
		if err != nil {
			return blob.Info{}, mapErr(err)
		}
		w.finish()
		info.ModTime = time.Now()
		return info, nil
	}
	if w.fill > 0 {
		if err := w.sendPart(); err != nil {
			return blob.Info{}, err
		}
	}
	w.wg.Wait()
	w.hq.close()
	if err := w.failed(); err != nil {
		return blob.Info{}, err
	}
	sum := hex.EncodeToString(w.h.Sum(nil))
	info := blob.Info{Size: w.size, SHA256: sum}
	sort.Slice(w.parts, func(i, j int) bool { return *w.parts[i].PartNumber < *w.parts[j].PartNumber })
	_, err := w.s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &w.s.bucket, Key: &w.object, UploadId: &w.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	})
	if err != nil {
		return blob.Info{}, mapErr(err)
	}
	w.s.setTagSum(ctx, w.object, sum)
	w.finish()
	info.ModTime = time.Now()
	return info, nil
}

// finish releases the writer after Commit.
func (w *writer) finish() {
	w.done = true
	w.s.putBuf(w.buf)
	w.buf = nil
	if w.uploadID != "" {
		w.s.dropLive(w.uploadID)
	}
	w.cancel()
}

// Abort stops the part uploads and aborts the multipart upload; after
// Commit it does nothing. It returns blob.ErrUnavailable when the abort
// cannot be sent (Sweep removes the upload later).
func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.cancel()
	w.wg.Wait()
	w.hq.close()
	w.s.putBuf(w.buf)
	w.buf = nil
	if w.uploadID == "" {
		return nil
	}
	defer w.s.dropLive(w.uploadID)
	if err := w.s.abortUpload(w.object, w.uploadID); err != nil {
		return fmt.Errorf("s3blob: abort %q: %w", w.key, err)
	}
	return nil
}
