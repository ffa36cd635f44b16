package s3blob

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/filegate/filegate/model/blob"
)

// Resumable uploads: see "Resumable uploads" in the package doc (doc.go)
// for the layout, the order of writes and the crash analysis.

const stateVersion = 1

// pstate is state.json.
type pstate struct {
	V         int       `json:"v"`
	Size      int64     `json:"size"`
	Hash      []byte    `json:"hash"` // SHA-256 state over all Size bytes
	UploadID  string    `json:"upload_id,omitempty"`
	Parts     []partRun `json:"parts,omitempty"` // sizes of parts 1..k, run-length coded
	Stages    []stage   `json:"stages,omitempty"`
	Assembled bool      `json:"assembled,omitempty"` // Target holds all bytes (Publish under way)
	// Target is the object the multipart upload assembles into: data, or
	// objects/<PartialKey(id)>; "" until the upload starts.
	Target string `json:"target,omitempty"`

	etag string // of state.json as read; "" for a new upload
}

type partRun struct {
	Size int64 `json:"s"`
	N    int32 `json:"n"`
}

type stage struct {
	Off  int64  `json:"off"`
	Size int64  `json:"size"`
	ETag string `json:"etag"`
}

// target is the object the upload's parts assemble into.
func (st *pstate) target(s *Store, id string) string {
	if st.Target != "" {
		return st.Target
	}
	return s.dataName(id)
}

func (st *pstate) numParts() int32 {
	var n int32
	for _, r := range st.Parts {
		n += r.N
	}
	return n
}

func (st *pstate) staged() int64 {
	var n int64
	for _, sg := range st.Stages {
		n += sg.Size
	}
	return n
}

func (st *pstate) addPart(size int64) {
	if k := len(st.Parts); k > 0 && st.Parts[k-1].Size == size {
		st.Parts[k-1].N++
		return
	}
	st.Parts = append(st.Parts, partRun{Size: size, N: 1})
}

// partSizes lists the size of every part in order.
func (st *pstate) partSizes() []int64 {
	var out []int64
	for _, r := range st.Parts {
		for range r.N {
			out = append(out, r.Size)
		}
	}
	return out
}

func (st *pstate) hash() (hash.Hash, error) {
	h := hashOf()
	if st.Size == 0 && len(st.Hash) == 0 {
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.Hash); err != nil {
		return nil, fmt.Errorf("s3blob: upload hash state: %w", err)
	}
	return h, nil
}

// partialLock serialises work on one upload id inside this process;
// conditional writes of state.json catch races across processes.
type partialLock struct {
	mu   sync.Mutex
	refs int // guarded by Store.mu
}

func (s *Store) lockPartial(id string) (release func()) {
	s.mu.Lock()
	l := s.partials[id]
	if l == nil {
		l = &partialLock{}
		s.partials[id] = l
	}
	l.refs++
	s.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.partials, id)
		}
		s.mu.Unlock()
	}
}

func (s *Store) partialDir(id string) string { return s.base + "partial/" + name(id) + "/" }
func (s *Store) stateName(id string) string  { return s.partialDir(id) + "state.json" }
func (s *Store) dataName(id string) string   { return s.partialDir(id) + "data" }

// targetName is where a new multipart upload for id assembles: in place
// under the key Config.PartialKey expects Publish to name, else data.
func (s *Store) targetName(id string) string {
	if s.partialKey != nil {
		if key := s.partialKey(id); checkKey(key) == nil {
			return s.objectName(key)
		}
	}
	return s.dataName(id)
}
func (s *Store) stageName(id string, off int64) string {
	return fmt.Sprintf("%sstage-%020d", s.partialDir(id), off)
}

// threshold is the least a chunk's tail must hold to become part n
// rather than a stage: 5 MiB, stepping up with the part size so that
// 10,000 parts stay enough.
func (s *Store) threshold(n int32) int64 {
	return minPart * int64(1+(n-1)/partTier)
}

// loadState reads state.json. It returns blob.ErrNotFound.
func (s *Store) loadState(ctx context.Context, id string) (*pstate, error) {
	object := s.stateName(id)
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &object})
	if err != nil {
		return nil, notFound(err, id)
	}
	defer out.Body.Close()
	var st pstate
	if err := json.NewDecoder(io.LimitReader(out.Body, 16<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("s3blob: upload %q state: %w", id, mapErr(err))
	}
	if st.V != stateVersion {
		return nil, fmt.Errorf("s3blob: upload %q state has version %d", id, st.V)
	}
	st.etag = aws.ToString(out.ETag)
	return &st, nil
}

// errRaced means another writer changed state.json since we read it.
var errRaced = fmt.Errorf("%w: upload changed by another writer", blob.ErrOffset)

// saveState writes state.json if nobody changed it since it was read,
// and remembers the new ETag.
func (s *Store) saveState(ctx context.Context, id string, st *pstate, h hash.Hash) error {
	st.V = stateVersion
	if h != nil {
		b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return err
		}
		st.Hash = b
	}
	body, err := json.Marshal(st)
	if err != nil {
		return err
	}
	object := s.stateName(id)
	in := &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &object, Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("application/json"),
		ChecksumCRC32: crc32Of(body),
	}
	if st.etag != "" {
		in.IfMatch = aws.String(st.etag)
	} else {
		in.IfNoneMatch = aws.String("*")
	}
	s.encrypt(in)
	out, err := s.c.PutObject(ctx, in)
	if err != nil {
		if isPrecondition(err) {
			return fmt.Errorf("%w (%q)", errRaced, id)
		}
		return mapErr(err)
	}
	st.etag = aws.ToString(out.ETag)
	return nil
}

// durableCtx outlives the caller's ctx: bytes read before a client went
// away are still made durable, within a bound.
func durableCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
}

// Append streams r onto the end of partial upload id; see blob.Partials
// and the comment above. Calls for one id are serialised in this process.
// It returns blob.ErrInvalidKey for a bad id, blob.ErrNotFound when
// offset is not 0 and id does not exist, blob.ErrOffset (also when
// another process appended meanwhile), blob.ErrUnavailable, accept's
// error, or the error of r or ctx together with the count of bytes kept.
func (s *Store) Append(ctx context.Context, id string, offset int64, r io.Reader, accept func(n int64) error) (int64, error) {
	if err := checkKey(id); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if offset < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", blob.ErrOffset, offset)
	}
	release := s.lockPartial(id)
	defer release()
	st, err := s.loadState(ctx, id)
	switch {
	case errors.Is(err, blob.ErrNotFound) && offset == 0:
		st = &pstate{}
	case err != nil:
		return 0, err
	}
	if offset != st.Size {
		return 0, fmt.Errorf("%w: upload %q is at %d, not %d", blob.ErrOffset, id, st.Size, offset)
	}
	h, err := st.hash()
	if err != nil {
		return 0, err
	}
	a := &appender{s: s, id: id, st: st, h: h, hq: newHasher(h), sem: make(chan struct{}, s.concurrency)}
	a.dctx, a.cancel = durableCtx(ctx)
	defer a.cancel()
	n, rerr, serr := a.stream(ctx, r)
	if serr != nil {
		a.fail()
		return 0, serr
	}
	if rerr == nil && accept != nil {
		if err := accept(n); err != nil {
			a.fail()
			return 0, err
		}
	}
	if err := a.finish(offset + n); err != nil {
		a.fail()
		return 0, err
	}
	return n, rerr
}

// appender is one Append in progress.
type appender struct {
	s      *Store
	id     string
	st     *pstate
	h      hash.Hash
	dctx   context.Context
	cancel context.CancelFunc

	buf       *[]byte
	fill      int
	reserved  int     // bytes at the head of buf kept for the staged bytes
	hq        *hasher // SHA-256 of this Append's bytes, after st's
	merged    bool    // the old stages went into a part of this Append
	next      int32
	newParts  []int64
	newUpload string // a multipart upload this Append started

	sem   chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
	stage *stage // the tail staged by this Append
	keep  bool   // a state write of unknown outcome may name stage and upload
}

func (a *appender) upErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *appender) newBuf() {
	a.buf = a.s.getBuf(a.s.partSizeOf(a.next))
	a.fill = 0
	if !a.merged && len(a.st.Stages) > 0 {
		a.reserved = int(a.st.staged())
		a.fill = a.reserved
	} else {
		a.reserved = 0
	}
	a.hq.reset(a.fill) // staged bytes at the head were hashed before
}

// stream reads r to its end, sending full parts as they fill. It returns
// the count of new bytes read, r's (or ctx's) error, and the store's
// error, which loses the whole chunk.
func (a *appender) stream(ctx context.Context, r io.Reader) (n int64, rerr, serr error) {
	a.next = a.st.numParts() + 1
	a.newBuf()
	for {
		if err := ctx.Err(); err != nil {
			return n, err, nil
		}
		if err := a.upErr(); err != nil {
			return n, nil, err
		}
		k, err := r.Read((*a.buf)[a.fill:])
		a.fill += k
		n += int64(k)
		a.hq.some((*a.buf)[:a.fill])
		if a.fill == len(*a.buf) {
			if perr := a.sendPart(); perr != nil {
				return n, nil, perr
			}
			if a.next > maxParts {
				return n, nil, errTooLarge
			}
			a.newBuf()
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// loadStages reads the staged bytes into the head of the buffer.
func (a *appender) loadStages() error {
	off := 0
	for _, sg := range a.st.Stages {
		object := a.s.stageName(a.id, sg.Off)
		out, err := a.s.c.GetObject(a.dctx, &s3.GetObjectInput{Bucket: &a.s.bucket, Key: &object, IfMatch: aws.String(sg.ETag)})
		if err != nil {
			return fmt.Errorf("s3blob: upload %q: staged bytes at %d: %w", a.id, sg.Off, mapErr(err))
		}
		_, err = io.ReadFull(out.Body, (*a.buf)[off:off+int(sg.Size)])
		out.Body.Close()
		if err != nil {
			return fmt.Errorf("s3blob: upload %q: staged bytes at %d: %w", a.id, sg.Off, mapErr(err))
		}
		off += int(sg.Size)
	}
	a.reserved = 0
	a.merged = true
	return nil
}

// sendPart uploads the buffer as part a.next in the background.
func (a *appender) sendPart() error {
	if a.reserved > 0 {
		if err := a.loadStages(); err != nil {
			return err
		}
	}
	if a.st.UploadID == "" {
		object := a.s.targetName(a.id)
		out, err := a.s.c.CreateMultipartUpload(a.dctx, encrypted(a.s, &s3.CreateMultipartUploadInput{
			Bucket: &a.s.bucket, Key: &object, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		}))
		if err != nil {
			return mapErr(err)
		}
		a.st.UploadID = aws.ToString(out.UploadId)
		a.st.Target = object
		a.newUpload = a.st.UploadID
		a.s.addLive(a.newUpload)
	}
	a.sem <- struct{}{}
	buf, n, num := a.buf, a.fill, a.next
	hashed := a.hq.rest((*buf)[:n])
	a.buf, a.fill, a.reserved = nil, 0, 0
	a.next++
	a.newParts = append(a.newParts, int64(n))
	a.wg.Add(1)
	go func() {
		defer func() { <-hashed; a.s.putBuf(buf); <-a.sem; a.wg.Done() }()
		object := a.st.Target
		_, err := a.s.c.UploadPart(a.dctx, &s3.UploadPartInput{
			Bucket: &a.s.bucket, Key: &object, UploadId: &a.st.UploadID,
			PartNumber: aws.Int32(num), ContentLength: aws.Int64(int64(n)),
			Body: bytes.NewReader((*buf)[:n]), ChecksumCRC32: crc32Of((*buf)[:n]),
		})
		if err != nil {
			a.mu.Lock()
			if a.err == nil {
				a.err = mapErr(err)
			}
			a.mu.Unlock()
		}
	}()
	return nil
}

// finish makes the chunk durable: the tail becomes a last part or a
// stage, then state.json is written and consumed stages are deleted.
func (a *appender) finish(size int64) error {
	newTail := a.fill - a.reserved
	if a.buf != nil && newTail > 0 && int64(a.fill) >= a.s.threshold(a.next) {
		if err := a.sendPart(); err != nil {
			return err
		}
	} else if newTail > 0 {
		off := size - int64(newTail)
		object := a.s.stageName(a.id, off)
		body := (*a.buf)[a.reserved:a.fill]
		a.hq.rest((*a.buf)[:a.fill])
		out, err := a.s.c.PutObject(a.dctx, encrypted(a.s, &s3.PutObjectInput{
			Bucket: &a.s.bucket, Key: &object, Body: bytes.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))), ChecksumCRC32: crc32Of(body),
		}))
		if err != nil {
			return mapErr(err)
		}
		a.stage = &stage{Off: off, Size: int64(len(body)), ETag: aws.ToString(out.ETag)}
	}
	a.wg.Wait()
	a.hq.close() // the hash state is complete from here on
	a.s.putBuf(a.buf)
	a.buf = nil
	if err := a.upErr(); err != nil {
		return err
	}
	if size == a.st.Size && a.st.etag != "" {
		return nil // an empty chunk on an existing upload changes nothing
	}
	old := a.st.Stages
	next := *a.st
	next.Size = size
	next.Parts = append([]partRun(nil), a.st.Parts...)
	for _, p := range a.newParts {
		next.addPart(p)
	}
	if a.merged {
		next.Stages = nil
	} else {
		next.Stages = append([]stage(nil), old...)
	}
	if a.stage != nil {
		next.Stages = append(next.Stages, *a.stage)
	}
	if err := a.s.saveState(a.dctx, a.id, &next, a.h); err != nil {
		// Unless the write was refused, it may have landed after all:
		// then the state names this Append's stage and upload, so
		// fail must leave them to Sweep, which spares what is named.
		a.keep = !errors.Is(err, errRaced)
		return err
	}
	*a.st = next
	if a.newUpload != "" {
		a.s.dropLive(a.newUpload)
		a.newUpload = ""
	}
	if a.merged {
		for _, sg := range old {
			if err := a.s.deleteObject(a.dctx, a.s.stageName(a.id, sg.Off)); err != nil {
				slog.Warn("s3blob: delete merged stage", "id", a.id, "err", err)
			}
		}
	}
	return nil
}

// fail undoes what only this Append refers to: a multipart upload it
// started and its staged tail. Parts sent to an older upload are past the
// recorded ones and are overwritten or ignored later.
func (a *appender) fail() {
	a.wg.Wait()
	a.hq.close()
	a.s.putBuf(a.buf)
	a.buf = nil
	if a.keep {
		if a.newUpload != "" {
			a.s.dropLive(a.newUpload)
		}
		return
	}
	if a.newUpload != "" {
		a.s.abortUpload(a.st.Target, a.newUpload)
		a.s.dropLive(a.newUpload)
	}
	if a.stage != nil {
		a.s.deleteObject(a.dctx, a.s.stageName(a.id, a.stage.Off))
	}
}

// PartialSize returns the durable size of partial upload id from its
// state.json; while an Append runs it is the size before that Append. It
// returns blob.ErrInvalidKey, blob.ErrNotFound and blob.ErrUnavailable.
func (s *Store) PartialSize(ctx context.Context, id string) (int64, error) {
	if err := checkKey(id); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	st, err := s.loadState(ctx, id)
	if err != nil {
		return 0, err
	}
	return st.Size, nil
}
