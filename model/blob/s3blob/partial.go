package s3blob

import (
	"bytes"
	"context"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/filegate/filegate/model/blob"
)

// Resumable uploads.
//
// A partial upload id lives under partial/<name>/. Its bytes are, in
// order, the parts of one multipart upload on partial/<name>/data
// followed by a few staged objects stage-<offset>. Parts are at least
// 5 MiB (S3's minimum for all parts but the last); a chunk's tail that
// does not fill one is staged as an object of its own, so every byte
// Append acknowledges is durable in S3. When staged and new bytes
// together fill a part, the staged bytes are read back (they are smaller
// than one part) and sent at the head of that part.
//
// state.json says which parts and stages make up the upload, its size,
// and the marshalled SHA-256 state over all its bytes, so Publish never
// rereads what was hashed once. Append uploads parts and stages first and
// writes state.json last, with If-Match on the ETag it read (If-None-Match
// for a new upload): the state never names data that is not in S3, and a
// second writer racing on the same id (a caller bug the tus locker
// prevents) fails with blob.ErrOffset instead of overwriting. The accept
// callback runs after the chunk is read and before state.json is written.
//
// Crash points, and why no acknowledged byte is lost or counted twice:
//   - before state.json is written: the old state still holds; the
//     chunk was never acknowledged. Its parts have numbers past the
//     recorded ones and are overwritten by the next Append or left out of
//     CompleteMultipartUpload; its stage object is overwritten by the
//     next stage at that offset or removed by Publish, Discard or Sweep; a
//     multipart upload it created is named by no state and Sweep aborts
//     it.
//   - after state.json, before consumed stages are deleted: they are
//     unreferenced leftovers, removed the same way.
//   - during Publish: CompleteMultipartUpload assembles partial/<name>/data
//     and state.json is marked assembled; the data is copied server side
//     to objects/<key> with its SHA-256 metadata; then state.json is
//     deleted, then data and stages. Every step is safe to repeat, and a
//     retry after a crash between completing and marking finds the
//     upload gone and the data object of the recorded size in its place.
//
// S3 cannot rename, and a multipart upload's object name is fixed when it
// starts, before Publish names the key; so publishing an upload that has
// parts costs one server-side copy. An upload under one part is published
// with a single PutObject.

const stateVersion = 1

// pstate is state.json.
type pstate struct {
	V         int       `json:"v"`
	Size      int64     `json:"size"`
	Hash      []byte    `json:"hash"` // SHA-256 state over all Size bytes
	UploadID  string    `json:"upload_id,omitempty"`
	Parts     []partRun `json:"parts,omitempty"` // sizes of parts 1..k, run-length coded
	Stages    []stage   `json:"stages,omitempty"`
	Assembled bool      `json:"assembled,omitempty"` // data holds all bytes (Publish under way)

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
	a := &appender{s: s, id: id, st: st, h: h, sem: make(chan struct{}, s.concurrency)}
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
	reserved  int  // bytes at the head of buf kept for the staged bytes
	merged    bool // the old stages went into a part of this Append
	next      int32
	newParts  []int64
	newUpload string // a multipart upload this Append started

	sem   chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
	stage *stage // the tail staged by this Append
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
		if k > 0 {
			a.h.Write((*a.buf)[a.fill : a.fill+k])
			a.fill += k
			n += int64(k)
		}
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
		object := a.s.dataName(a.id)
		out, err := a.s.c.CreateMultipartUpload(a.dctx, &s3.CreateMultipartUploadInput{
			Bucket: &a.s.bucket, Key: &object, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		})
		if err != nil {
			return mapErr(err)
		}
		a.st.UploadID = aws.ToString(out.UploadId)
		a.newUpload = a.st.UploadID
		a.s.addLive(a.newUpload)
	}
	a.sem <- struct{}{}
	buf, n, num := a.buf, a.fill, a.next
	a.buf, a.fill, a.reserved = nil, 0, 0
	a.next++
	a.newParts = append(a.newParts, int64(n))
	a.wg.Add(1)
	go func() {
		defer func() { a.s.putBuf(buf); <-a.sem; a.wg.Done() }()
		object := a.s.dataName(a.id)
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
		out, err := a.s.c.PutObject(a.dctx, &s3.PutObjectInput{
			Bucket: &a.s.bucket, Key: &object, Body: bytes.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))), ChecksumCRC32: crc32Of(body),
		})
		if err != nil {
			return mapErr(err)
		}
		a.stage = &stage{Off: off, Size: int64(len(body)), ETag: aws.ToString(out.ETag)}
	}
	a.wg.Wait()
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
	a.s.putBuf(a.buf)
	a.buf = nil
	if a.newUpload != "" {
		a.s.abortUpload(a.s.dataName(a.id), a.newUpload)
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

// Publish turns partial upload id into the committed blob key; see the
// comment above for the steps. It returns blob.ErrInvalidKey,
// blob.ErrNotFound, blob.ErrOffset when another process changed the
// upload meanwhile, and blob.ErrUnavailable.
func (s *Store) Publish(ctx context.Context, id, key string) (blob.Info, error) {
	if err := checkKey(id); err != nil {
		return blob.Info{}, err
	}
	if err := checkKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	release := s.lockPartial(id)
	defer release()
	st, err := s.loadState(ctx, id)
	if err != nil {
		return blob.Info{}, err
	}
	h, err := st.hash()
	if err != nil {
		return blob.Info{}, err
	}
	info := blob.Info{Size: st.Size, SHA256: hex.EncodeToString(h.Sum(nil))}
	object := s.objectName(key)
	if st.UploadID == "" {
		info.ModTime, err = s.publishStaged(ctx, id, st, object, info.SHA256)
	} else {
		if !st.Assembled {
			if err := s.assemble(ctx, id, st); err != nil {
				return blob.Info{}, err
			}
		}
		info.ModTime, err = s.copyObject(ctx, s.dataName(id), object, info)
		err = mapErr(err)
	}
	if err != nil {
		return blob.Info{}, err
	}
	if err := s.deleteObject(ctx, s.stateName(id)); err != nil {
		return blob.Info{}, err
	}
	if err := s.removePartialObjects(ctx, id); err != nil {
		slog.Warn("s3blob: clean up published upload", "id", id, "err", err)
	}
	return info, nil
}

// publishStaged writes an upload that never filled a part (its stages
// total less than 5 MiB) with one PutObject.
func (s *Store) publishStaged(ctx context.Context, id string, st *pstate, object, sum string) (time.Time, error) {
	body := make([]byte, 0, st.Size)
	for _, sg := range st.Stages {
		b, err := s.readStage(ctx, id, sg)
		if err != nil {
			return time.Time{}, err
		}
		body = append(body, b...)
	}
	if int64(len(body)) != st.Size {
		return time.Time{}, fmt.Errorf("s3blob: upload %q stages hold %d bytes, state says %d", id, len(body), st.Size)
	}
	_, err := s.c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &object, Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), Metadata: map[string]string{metaSHA256: sum},
		ChecksumCRC32: crc32Of(body),
	})
	if err != nil {
		return time.Time{}, mapErr(err)
	}
	return time.Now(), nil
}

func (s *Store) readStage(ctx context.Context, id string, sg stage) ([]byte, error) {
	object := s.stageName(id, sg.Off)
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &object, IfMatch: aws.String(sg.ETag)})
	if err != nil {
		return nil, fmt.Errorf("s3blob: upload %q: staged bytes at %d: %w", id, sg.Off, mapErr(err))
	}
	defer out.Body.Close()
	b := make([]byte, sg.Size)
	if _, err := io.ReadFull(out.Body, b); err != nil {
		return nil, fmt.Errorf("s3blob: upload %q: staged bytes at %d: %w", id, sg.Off, mapErr(err))
	}
	return b, nil
}

// assemble sends the stages as the last part, completes the multipart
// upload into partial/<name>/data and records that in state.json.
func (s *Store) assemble(ctx context.Context, id string, st *pstate) error {
	data := s.dataName(id)
	sizes := st.partSizes()
	last := int32(len(sizes)) + 1
	if len(st.Stages) > 0 {
		body := make([]byte, 0, st.staged())
		for _, sg := range st.Stages {
			b, err := s.readStage(ctx, id, sg)
			if err != nil {
				return err
			}
			body = append(body, b...)
		}
		_, err := s.c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.bucket, Key: &data, UploadId: &st.UploadID, PartNumber: aws.Int32(last),
			ContentLength: aws.Int64(int64(len(body))), Body: bytes.NewReader(body),
			ChecksumCRC32: crc32Of(body),
		})
		if err != nil {
			return s.assembledAlready(ctx, id, st, err)
		}
		sizes = append(sizes, int64(len(body)))
	}
	parts, err := s.listParts(ctx, data, st.UploadID, int32(len(sizes)))
	if err != nil {
		return s.assembledAlready(ctx, id, st, err)
	}
	for i, p := range parts {
		if aws.ToInt64(p.Size) != sizes[i] {
			return fmt.Errorf("s3blob: upload %q part %d holds %d bytes, state says %d", id, i+1, aws.ToInt64(p.Size), sizes[i])
		}
	}
	done := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		done[i] = types.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag, ChecksumCRC32: p.ChecksumCRC32}
	}
	_, err = s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &data, UploadId: &st.UploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
	})
	if err != nil {
		return s.assembledAlready(ctx, id, st, err)
	}
	st.Assembled = true
	return s.saveState(ctx, id, st, nil)
}

// assembledAlready handles a missing multipart upload while assembling:
// a crash after CompleteMultipartUpload left data complete but the state
// unmarked. Any other error is returned mapped.
func (s *Store) assembledAlready(ctx context.Context, id string, st *pstate, err error) error {
	if apiCode(err) != "NoSuchUpload" {
		return mapErr(err)
	}
	data := s.dataName(id)
	h, herr := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &data})
	if herr != nil || aws.ToInt64(h.ContentLength) != st.Size {
		return fmt.Errorf("s3blob: upload %q lost its multipart upload: %w", id, mapErr(err))
	}
	st.Assembled = true
	return s.saveState(ctx, id, st, nil)
}

// listParts returns parts 1..n of a multipart upload, in order.
func (s *Store) listParts(ctx context.Context, object, uploadID string, n int32) ([]types.Part, error) {
	var parts []types.Part
	p := s3.NewListPartsPaginator(s.c, &s3.ListPartsInput{Bucket: &s.bucket, Key: &object, UploadId: &uploadID})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, part := range page.Parts {
			num := aws.ToInt32(part.PartNumber)
			if num >= 1 && num <= n {
				parts = append(parts, part)
			}
		}
	}
	for i, part := range parts {
		if aws.ToInt32(part.PartNumber) != int32(i+1) {
			return nil, fmt.Errorf("s3blob: multipart upload %s misses part %d", object, i+1)
		}
	}
	if int32(len(parts)) != n {
		return nil, fmt.Errorf("s3blob: multipart upload %s has %d of %d parts", object, len(parts), n)
	}
	return parts, nil
}

// Discard removes partial upload id: state.json first, so the upload is
// gone at once, then its multipart uploads and objects. A missing one is
// not an error. It returns blob.ErrInvalidKey and blob.ErrUnavailable.
func (s *Store) Discard(ctx context.Context, id string) error {
	if err := checkKey(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	release := s.lockPartial(id)
	defer release()
	if err := s.deleteObject(ctx, s.stateName(id)); err != nil {
		return err
	}
	if err := s.abortUploadsOf(ctx, s.dataName(id)); err != nil {
		return err
	}
	return s.removePartialObjects(ctx, id)
}

// abortUploadsOf aborts every multipart upload on object.
func (s *Store) abortUploadsOf(ctx context.Context, object string) error {
	out, err := s.c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &object})
	if err != nil {
		return mapErr(err)
	}
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) != object {
			continue
		}
		if err := s.abortUpload(object, aws.ToString(u.UploadId)); err != nil {
			return err
		}
	}
	return nil
}

// removePartialObjects deletes everything under partial/<name>/ but
// state.json.
func (s *Store) removePartialObjects(ctx context.Context, id string) error {
	dir := s.partialDir(id)
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &dir})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return mapErr(err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if strings.HasSuffix(k, "/state.json") {
				continue
			}
			if err := s.deleteObject(ctx, k); err != nil {
				return err
			}
		}
	}
	return nil
}
