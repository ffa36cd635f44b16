package tus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob"
)

// fastMax is the largest upload that may finish inside its creation
// request without a session row: its bytes are read into memory (at most
// this much), written as one blob and recorded with one transaction. Such
// an upload's id is never seen by anyone before it is finished, so it
// needs neither a row nor a shared lock.
const fastMax = 1 << 20

// touchEvery is how stale a running upload's row may get: its expiry
// (TTL after the last touch) and the offset the pending listing shows.
const touchEvery = 10 * time.Second

var fastBufs = sync.Pool{New: func() any { b := make([]byte, fastMax); return &b }}

// dataStore is tusd's view of filegate: uploads are session rows plus
// partial blobs, finished into the namespace with Repo.PutFile.
type dataStore struct{ h *Handler }

var (
	_ handler.DataStore               = (*dataStore)(nil)
	_ handler.TerminaterDataStore     = (*dataStore)(nil)
	_ handler.ConcaterDataStore       = (*dataStore)(nil)
	_ handler.LengthDeferrerDataStore = (*dataStore)(nil)
)

// upload is one upload while a request works on it.
type upload struct {
	h      *Handler
	s      *Session
	offset int64 // the blob's offset when loaded or last written
	folder *model.Node
	// fresh: a small upload created by this request that may finish
	// before anyone learns its id; it has no row yet, and buf holds its
	// bytes until FinishUpload.
	fresh bool
	buf   *[]byte
	bufN  int
	done  bool
}

func (d *dataStore) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return u.(*upload)
}
func (d *dataStore) AsConcatableUpload(u handler.Upload) handler.ConcatableUpload {
	return u.(*upload)
}
func (d *dataStore) AsLengthDeclarableUpload(u handler.Upload) handler.LengthDeclarableUpload {
	return u.(*upload)
}

var (
	errNoState   = errors.New("tus: request did not pass through Handler.ServeHTTP")
	errForbidden = tusError(http.StatusForbidden, "ERR_FORBIDDEN", "you may not write into the upload's folder")
	errNoFolder  = tusError(http.StatusConflict, "ERR_FOLDER_NOT_FOUND", "the upload's folder does not exist")
	errNoSpace   = tusError(http.StatusInsufficientStorage, "ERR_NO_SPACE", "the server is out of storage space")
	errLocked    = tusError(http.StatusLocked, "ERR_LOCKED", "a WebDAV lock protects the target file or folder; retry once it is released")
)

// unlocked asks the authorizer's LockGuard, when it has one, whether the
// file name in folder may be written.
func (h *Handler) unlocked(ctx context.Context, folder *model.Node, name string) error {
	g, ok := h.authz.(LockGuard)
	if !ok || folder == nil || name == "" {
		return nil
	}
	return g.Unlocked(ctx, folder, name)
}

// modelErr turns repository errors into tusd errors with a status.
func modelErr(err error) error {
	var te handler.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return err
	case errors.Is(err, model.ErrLocked):
		return errLocked
	case errors.Is(err, model.ErrQuota):
		return errQuota
	case errors.Is(err, model.ErrInvalid):
		return tusError(http.StatusBadRequest, "ERR_INVALID", strings.TrimPrefix(err.Error(), model.ErrInvalid.Error()+": "))
	case errors.Is(err, model.ErrExists), errors.Is(err, model.ErrConflict):
		return tusError(http.StatusConflict, "ERR_CONFLICT", "the target name is taken by a folder, or the folder changed")
	case errors.Is(err, model.ErrNotFound):
		return errNoFolder
	case errors.Is(err, model.ErrNoSpace), errors.Is(err, blob.ErrNoSpace):
		return errNoSpace
	case errors.Is(err, model.ErrUnavailable), errors.Is(err, blob.ErrUnavailable):
		return tusError(http.StatusServiceUnavailable, "ERR_UNAVAILABLE", "storage is temporarily unavailable; retry later")
	case errors.Is(err, blob.ErrOffset):
		return handler.ErrMismatchOffset
	}
	// A driver error from the door's own tables still means a full disk
	// or a database away, not a 500.
	if m := model.DBErr(err); errors.Is(m, model.ErrNoSpace) || errors.Is(m, model.ErrUnavailable) {
		return modelErr(m)
	}
	return err
}

// outcomeUnknown reports whether err, raw or mapped by modelErr, leaves a
// metadata write's outcome unknown (see model.CommitUnknown).
func outcomeUnknown(err error) bool {
	var te handler.Error
	if errors.As(err, &te) {
		return te.HTTPResponse.StatusCode == http.StatusServiceUnavailable
	}
	return model.CommitUnknown(err)
}

// NewUpload checks the target and the caller's right to write there, then
// creates the upload. A retried final concatenation gets the upload the
// first attempt created.
func (d *dataStore) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	h := d.h
	rs := stateFrom(ctx)
	if rs == nil {
		return nil, errNoState
	}
	c := rs.caller
	meta := map[string]string{}
	for k, v := range info.MetaData {
		meta[k] = v
	}
	for k, v := range rs.meta {
		meta[k] = v
	}
	var ckey string
	if info.IsFinal {
		ckey = concatKey(c.Subject, info.PartialUploads)
		if u, err := d.byConcatKey(ctx, ckey); err == nil {
			return u, nil
		} else if !errors.Is(err, model.ErrNotFound) {
			return nil, err
		}
	}
	t, err := targetFrom(meta, !info.IsPartial)
	if err != nil {
		return nil, modelErr(err)
	}
	_, explicit := meta["folder"]
	_, explicitID := meta["parentId"]
	var folder *model.Node
	if !info.IsPartial || explicit || explicitID {
		if folder, err = h.resolveFolder(ctx, t); err != nil {
			if t.parentID == "" && (errors.Is(err, model.ErrNotFound) || errors.Is(err, model.ErrConflict)) &&
				!h.maySeeNearest(ctx, c, t.folder) {
				return nil, errForbidden
			}
			return nil, modelErr(err)
		}
		if !h.authz.MayWrite(ctx, c, folder) {
			return nil, errForbidden
		}
		if err := h.unlocked(ctx, folder, t.name); err != nil {
			return nil, modelErr(err)
		}
	}
	if !info.IsFinal {
		if err := h.checkQuota(ctx, c, info.Size); err != nil {
			return nil, modelErr(err)
		}
	}
	t0 := now()
	s := &Session{
		ID: model.NewID(), Owner: c.Subject, OwnerUserID: c.UserID, Name: t.name,
		Size: info.Size, SizeDeferred: info.SizeIsDeferred, IsPartial: info.IsPartial, IsFinal: info.IsFinal,
		Partials: strings.Join(info.PartialUploads, " "), Metadata: meta, Status: StatusNew,
		CreatedAt: t0, UpdatedAt: t0, ExpiresMS: t0.Add(h.cfg.TTL).UnixMilli(),
	}
	if folder != nil {
		s.FolderID, s.FolderPath = folder.ID, folder.Path
	}
	if info.IsFinal {
		s.ConcatKey = &ckey
	}
	u := &upload{h: h, s: s, folder: folder}
	rs.expires = s.Expires()
	if rs.method == http.MethodPost && !info.IsPartial && !info.IsFinal && !info.SizeIsDeferred &&
		info.Size <= fastMax && rs.contentLength == info.Size && (rs.hasBody || info.Size == 0) &&
		!rs.ietf {
		u.fresh = true
		rs.freshID = s.ID
		return u, nil
	}
	if folder != nil && s.Name != "" {
		// A folder taking the name would refuse the file only after all
		// its bytes came; say so now. (A small upload finishing in this
		// request learns it at the same cost from PutFile.)
		if n, err := h.store.Repo.LiveByPath(ctx, model.JoinPath(folder.Path, s.Name)); err == nil && n.IsDir {
			return nil, modelErr(fmt.Errorf("%w: a folder has that name", model.ErrConflict))
		}
	}
	if err := h.insertSession(ctx, s); err != nil {
		if info.IsFinal && errors.Is(err, model.ErrExists) {
			return d.byConcatKey(ctx, ckey)
		}
		return nil, modelErr(err)
	}
	rs.created = s.ID
	h.locks.remember(s) // the client's first PATCH then needs no owner query
	return u, nil
}

func (d *dataStore) byConcatKey(ctx context.Context, key string) (*upload, error) {
	s := new(Session)
	if err := d.h.db.NewSelect().Model(s).Where("us.concat_key = ?", key).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	u := &upload{h: d.h, s: s}
	if err := u.load(ctx); err != nil {
		return nil, err
	}
	return u, nil
}

// maySeeNearest reports whether c may stat the nearest live folder above
// folder (a path that does not name a live folder). Without a Seer every
// caller may.
func (h *Handler) maySeeNearest(ctx context.Context, c Caller, folder string) bool {
	seer, ok := h.authz.(Seer)
	if !ok {
		return true
	}
	for p, _ := model.SplitPath(folder); ; p, _ = model.SplitPath(p) {
		if p == "/" || p == "" {
			return seer.MayStat(ctx, c, rootNode())
		}
		if n, err := h.store.Repo.LiveByPath(ctx, p); err == nil && n.IsDir {
			return seer.MayStat(ctx, c, n)
		} else if err != nil && !errors.Is(err, model.ErrNotFound) {
			return false
		}
	}
}

// resolveFolder finds the live folder a target names.
func (h *Handler) resolveFolder(ctx context.Context, t target) (*model.Node, error) {
	if t.folder == "/" || t.parentID == model.RootID {
		return rootNode(), nil
	}
	var n *model.Node
	var err error
	if t.parentID != "" {
		n, err = h.store.Repo.NodeByID(ctx, t.parentID)
		if err == nil && (n.Archived() || n.Status != model.StatusCompleted) {
			err = model.ErrNotFound
		}
	} else {
		n, err = h.store.Repo.LiveByPath(ctx, t.folder)
	}
	if err != nil {
		return nil, err
	}
	if !n.IsDir {
		return nil, fmt.Errorf("%w: the target is not a folder", model.ErrConflict)
	}
	return n, nil
}

// rootNode is the root folder without a query: it cannot be moved,
// renamed or archived, and PutFile re-reads it inside its transaction.
func rootNode() *model.Node {
	return &model.Node{ID: model.RootID, Path: "/", Lineage: model.RootID, IsDir: true, Status: model.StatusCompleted}
}

// GetUpload returns the caller's upload; anyone else's is not found.
func (d *dataStore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	rs := stateFrom(ctx)
	if rs == nil {
		return nil, errNoState
	}
	if !validID(id) {
		return nil, handler.ErrNotFound
	}
	// The previous request's row, handed on by the lock, is current:
	// rows change only under the lock.
	s, err := rs.lockedSess, error(nil)
	if s == nil || s.ID != id {
		s, err = d.h.loadSession(ctx, id)
	}
	if errors.Is(err, model.ErrNotFound) || err == nil && s.Owner != rs.caller.Subject {
		return nil, handler.ErrNotFound
	}
	if err != nil {
		return nil, modelErr(err)
	}
	d.h.locks.remember(s)
	u := &upload{h: d.h, s: s}
	rs.sess = s
	if err := u.load(ctx); err != nil {
		rs.sessStale = true
		return nil, err
	}
	rs.expires = s.Expires()
	return u, nil
}

// load finds the offset: what the partial blob holds, never what the row
// or an earlier request said (a power cut may have taken back bytes a
// PATCH acknowledged; see localblob). A session whose partial blob is gone
// but whose published blob exists crashed between publishing and
// recording; it is recorded now, so the file appears and HEAD says done.
func (u *upload) load(ctx context.Context) error {
	s := u.s
	if s.Status == StatusCompleted {
		u.offset = s.Size
		return nil
	}
	n, err := u.h.store.Blobs.PartialSize(ctx, s.ID)
	if err == nil {
		u.offset = n
		if n == s.Size && !s.SizeDeferred && !s.IsPartial {
			// Every byte is stored but the instance died before it
			// published them: the client's HEAD would say done and the
			// file would never appear. Publish now.
			u.h.log.Info("tus: publishing an upload whose last PATCH ended with a crash", "id", s.ID)
			if err := u.FinishUpload(ctx); err != nil {
				return err
			}
			u.done = true
		}
		return nil
	}
	if !errors.Is(err, blob.ErrNotFound) {
		return modelErr(model.BlobErr(err))
	}
	info, err := u.h.store.Blobs.Stat(ctx, blobKey(s.ID))
	switch {
	case errors.Is(err, blob.ErrNotFound):
		u.offset = 0
		return nil
	case err != nil:
		return modelErr(model.BlobErr(err))
	case s.IsPartial:
		u.offset = info.Size
		return nil
	}
	u.h.log.Info("tus: recording an upload published before a crash", "id", s.ID)
	if err := u.record(ctx, model.Content{BlobKey: blobKey(s.ID), Size: info.Size, SHA256: info.SHA256}, nil, true); err != nil {
		return err
	}
	u.offset = s.Size
	return nil
}

func (u *upload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	s := u.s
	info := handler.FileInfo{
		ID: s.ID, Size: s.Size, SizeIsDeferred: s.SizeDeferred, Offset: u.offset,
		MetaData: s.Metadata, IsPartial: s.IsPartial, IsFinal: s.IsFinal,
	}
	if u.fresh {
		info.Offset = int64(u.bufN)
	}
	if s.Partials != "" {
		info.PartialUploads = strings.Fields(s.Partials)
	}
	if rs := stateFrom(ctx); rs != nil {
		rs.expires = s.Expires()
	}
	return info, nil
}

// GetReader is not offered: finished files are read through WebDAV or
// the files API, under their own authorization.
func (u *upload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	return nil, handler.ErrNotImplemented
}

// authorize asks again whether the caller may write into the upload's
// folder, so that revoking access stops the next PATCH.
func (u *upload) authorize(ctx context.Context, c Caller) error {
	if u.s.FolderID == "" {
		return nil
	}
	if u.s.FolderID == model.RootID {
		if !u.h.authz.MayWrite(ctx, c, rootNode()) {
			return errForbidden
		}
		return nil
	}
	folder, err := u.h.store.Repo.NodeByID(ctx, u.s.FolderID)
	if errors.Is(err, model.ErrNotFound) || err == nil && (folder.Archived() || !folder.IsDir) {
		return errNoFolder
	}
	if err != nil {
		return modelErr(err)
	}
	if !u.h.authz.MayWrite(ctx, c, folder) {
		return errForbidden
	}
	u.folder = folder
	return nil
}

// pendingAuth is an authorization running alongside a PATCH's body.
type pendingAuth struct {
	done chan struct{}
	err  error
}

// wait returns the authorization's outcome once it is known.
func (a *pendingAuth) wait() error {
	<-a.done
	return a.err
}

// startAuthorize runs authorize in the background for this request.
func (u *upload) startAuthorize(ctx context.Context, rs *reqState) *pendingAuth {
	a := &pendingAuth{done: make(chan struct{})}
	rs.auth = a
	go func() {
		defer close(a.done)
		a.err = u.authorize(ctx, rs.caller)
	}()
	return a
}

// WriteChunk appends the request body at offset. With Upload-Checksum,
// or when the body runs past the upload's length, the chunk is kept only
// if it arrived whole and right; otherwise the offset does not move.
func (u *upload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	rs := stateFrom(ctx)
	if rs == nil {
		return 0, errNoState
	}
	if u.fresh {
		return u.writeFresh(ctx, rs, src)
	}
	r := src
	accept := func(n int64) error { return rs.acceptChunk() }
	if rs.method == http.MethodPatch {
		// Authorization (a folder lookup, the decision and its audit
		// row) runs while the body arrives; the chunk is kept only once
		// it said yes, and the answer waits for it either way.
		a := u.startAuthorize(ctx, rs)
		defer a.wait()
		r = &revocable{r: src, every: recheckEvery, last: time.Now(), still: func() bool {
			if a.wait() != nil {
				return false
			}
			return u.folder == nil || u.h.authz.MayWrite(ctx, rs.caller, u.folder)
		}}
		accept = func(n int64) error {
			if err := a.wait(); err != nil {
				return err
			}
			return rs.acceptChunk()
		}
	}
	if rs.sum != nil {
		r = io.TeeReader(r, rs.sum)
	}
	n, err := u.h.store.Blobs.Append(ctx, u.s.ID, offset, r, accept)
	if rs.auth != nil {
		if aerr := rs.auth.wait(); aerr != nil {
			// Refused, yet the bytes that came before a broken body
			// were kept (a chunk is kept whole or not at all only when
			// it ends cleanly). They stay in the unfinished upload,
			// which this caller cannot finish while refused.
			return n, aerr
		}
	}
	if n > 0 {
		u.offset = offset + n
		u.s.Offset = u.offset
		// The row's offset and expiry need not follow every chunk: the
		// blob has the offset, and finishing rewrites the row anyway.
		last := !u.s.SizeDeferred && u.offset == u.s.Size
		if last || time.Since(u.s.UpdatedAt) < touchEvery {
			rs.expires = u.s.Expires()
			return n, modelErr(err)
		}
		if terr := u.h.touch(context.WithoutCancel(ctx), u.s); terr != nil {
			// The bytes are kept and the offset comes from the blob;
			// only the expiry and the pending listing lag.
			u.h.log.Warn("tus: record upload progress", "id", u.s.ID, "err", terr)
			rs.sessStale = true
		}
		rs.expires = u.s.Expires()
	}
	if errors.Is(err, blob.ErrNotFound) {
		err = handler.ErrMismatchOffset
	}
	return n, modelErr(err)
}

// acceptChunk decides whether a chunk read to its end may stay.
func (rs *reqState) acceptChunk() error {
	if rs.body != nil && rs.body.over {
		return handler.ErrSizeExceeded
	}
	if rs.sum != nil {
		if rs.body != nil && rs.body.err != nil {
			return handler.ErrUnexpectedEOF // a checksummed chunk is kept whole or not at all
		}
		if !rs.sum.ok() {
			return errChecksum
		}
	}
	return nil
}

// writeFresh reads a small creation-with-upload body into memory. A
// whole, correct body waits there for FinishUpload; anything else makes
// the upload an ordinary one, with a row and a partial blob holding what
// arrived, so the client can resume.
func (u *upload) writeFresh(ctx context.Context, rs *reqState, src io.Reader) (int64, error) {
	u.buf = fastBufs.Get().(*[]byte)
	n, _ := io.ReadFull(src, (*u.buf)[:u.s.Size])
	u.bufN = n
	if rs.sum != nil {
		rs.sum.Write((*u.buf)[:n])
	}
	aerr := rs.acceptChunk()
	if int64(n) == u.s.Size && aerr == nil && (rs.body == nil || rs.body.err == nil) {
		return int64(n), nil
	}
	// Becoming an ordinary upload.
	u.fresh = false
	rs.freshID = ""
	defer u.releaseBuf()
	if err := u.h.insertSession(ctx, u.s); err != nil {
		return 0, modelErr(err)
	}
	rs.created = u.s.ID
	u.h.locks.remember(u.s)
	if aerr != nil || n == 0 {
		return 0, aerr
	}
	w, err := u.h.store.Blobs.Append(ctx, u.s.ID, 0, bytes.NewReader((*u.buf)[:n]), nil)
	u.offset = w
	u.s.Offset = w
	if w > 0 {
		if terr := u.h.touch(context.WithoutCancel(ctx), u.s); terr != nil {
			u.h.log.Warn("tus: record upload progress", "id", u.s.ID, "err", terr)
		}
	}
	return w, modelErr(err)
}

func (u *upload) releaseBuf() {
	if u.buf != nil {
		fastBufs.Put(u.buf)
		u.buf, u.bufN = nil, 0
	}
}

// FinishUpload publishes the bytes and records the file, which appears at
// its path in one step. A partial upload waits for its final upload.
func (u *upload) FinishUpload(ctx context.Context) error {
	if u.done {
		return nil
	}
	ctx = context.WithoutCancel(ctx) // the last byte is in; finish even if the client left
	if u.fresh {
		return u.finishFresh(ctx)
	}
	if rs := stateFrom(ctx); rs != nil && rs.auth != nil {
		if err := rs.auth.wait(); err != nil {
			return err // never publish what a refused request sent
		}
	}
	err := u.finish(ctx)
	if rs := stateFrom(ctx); rs != nil {
		if err != nil {
			rs.sessStale = true
		} else if u.done {
			rs.finished = true
		}
	}
	return err
}

// finish publishes and records an upload that has a row.
func (u *upload) finish(ctx context.Context) error {
	s := u.s
	if s.Status == StatusCompleted || s.IsPartial {
		return nil
	}
	info, err := u.h.store.Blobs.Publish(ctx, s.ID, blobKey(s.ID))
	// Bytes published just now cannot be recorded yet.
	maybeRecorded := errors.Is(err, blob.ErrNotFound)
	if maybeRecorded {
		// Nothing was ever appended (an empty upload), or a crash came
		// after publishing.
		info, err = u.h.store.Blobs.Stat(ctx, blobKey(s.ID))
		if errors.Is(err, blob.ErrNotFound) && s.Size == 0 {
			info, err = u.writeBlob(ctx, nil)
		}
	}
	if err != nil {
		return modelErr(model.BlobErr(err))
	}
	if info.Size != s.Size {
		return fmt.Errorf("tus: upload %s has %d bytes, not the declared %d", s.ID, info.Size, s.Size)
	}
	return u.record(ctx, model.Content{BlobKey: blobKey(s.ID), Size: info.Size, SHA256: info.SHA256}, nil, maybeRecorded)
}

func (u *upload) finishFresh(ctx context.Context) error {
	defer u.releaseBuf()
	var b []byte
	if u.buf != nil {
		b = (*u.buf)[:u.bufN]
	}
	info, err := u.writeBlob(ctx, b)
	if err != nil {
		return modelErr(model.BlobErr(err))
	}
	head := b[:min(len(b), 512)]
	if err := u.record(ctx, model.Content{BlobKey: blobKey(u.s.ID), Size: info.Size, SHA256: info.SHA256}, head, false); err != nil {
		if !outcomeUnknown(err) { // else a committed row may refer to it; the sweep decides
			u.h.deleteBlob(ctx, blobKey(u.s.ID))
		}
		return err
	}
	return nil
}

// writeBlob commits b as the upload's blob in one write.
func (u *upload) writeBlob(ctx context.Context, b []byte) (blob.Info, error) {
	w, err := u.h.store.Blobs.Create(ctx, blobKey(u.s.ID))
	if err != nil {
		return blob.Info{}, err
	}
	defer w.Abort()
	if _, err := w.Write(b); err != nil {
		return blob.Info{}, err
	}
	return w.Commit(ctx)
}

// record makes the finished bytes the content of the target file and
// marks the session completed. head, when known, is the first bytes, for
// the MIME type when the client gave none. maybeRecorded says that an
// earlier attempt may have recorded the file already (the bytes were
// published before this request), which costs a lookup to find out.
func (u *upload) record(ctx context.Context, c model.Content, head []byte, maybeRecorded bool) error {
	s, h := u.s, u.h
	folder := u.folder
	if folder == nil && s.FolderID == model.RootID {
		folder = rootNode()
	}
	if folder == nil {
		f, err := h.store.Repo.NodeByID(ctx, s.FolderID)
		if err != nil || f.Archived() || !f.IsDir {
			return errNoFolder
		}
		folder = f
	}
	t, _ := targetFrom(s.Metadata, false)
	meta := t.meta
	if meta.MimeType == "" {
		if head == nil {
			head = h.readHead(ctx, c.BlobKey)
		}
		meta.MimeType = model.DetectType(s.Name, head)
	}
	// A retry after a crash may find the file already pointing at this
	// blob; it is only marked done then, rather than given the same
	// content again as a new version.
	if maybeRecorded {
		if cur, err := h.store.Repo.LiveByPath(ctx, model.JoinPath(folder.Path, s.Name)); err == nil && cur.BlobKey == c.BlobKey {
			return u.markDone(ctx, cur.ID, c.SHA256)
		}
	}
	// A lock taken while the bytes came stops the file here; the upload
	// stays, and finishes once the lock is gone (a HEAD finishes it). A
	// small upload finishing in the request that created it was checked
	// a moment ago.
	if !u.fresh {
		if err := h.unlocked(ctx, folder, s.Name); err != nil {
			return modelErr(err)
		}
	}
	// On SQLite, concurrent uploads' rows share one group commit (see
	// model.Repo); queuing them here first would give each its own.
	// The quota is checked again against the live files: other uploads
	// may have finished since this one was created within it.
	cond := model.Cond{Quota: model.Quota{Account: s.OwnerUserID}}
	if caller, ok := callerFrom(ctx); ok && caller.UserID == s.OwnerUserID {
		cond.Quota.Bytes = caller.QuotaBytes
	}
	n, _, old, err := h.store.Repo.PutFile(ctx, folder, s.Name, c, meta, s.OwnerUserID, cond)
	if err != nil {
		return modelErr(err)
	}
	if old != "" && old != c.BlobKey {
		h.deleteBlob(ctx, old)
	}
	return u.markDone(ctx, n.ID, c.SHA256)
}

func (u *upload) markDone(ctx context.Context, nodeID, sum string) error {
	s := u.s
	s.Status, s.NodeID, s.SHA256, s.Offset = StatusCompleted, nodeID, sum, s.Size
	u.offset = s.Size
	if u.fresh {
		u.fresh, u.done = false, true
		return nil
	}
	u.done = true
	t := now()
	s.UpdatedAt, s.ExpiresMS = t, t.Add(u.h.cfg.TTL).UnixMilli()
	_, err := u.h.db.NewUpdate().Model(s).ModelTableExpr("upload_sessions").
		Column("status", "node_id", "sha256", "upload_offset", "updated_at", "expires_ms").
		Where("id = ?", s.ID).Exec(ctx)
	return modelErr(dbErr(err))
}

func (h *Handler) readHead(ctx context.Context, key string) []byte {
	r, err := h.store.Blobs.Open(ctx, key)
	if err != nil {
		return nil
	}
	defer r.Close()
	b := make([]byte, 512)
	n, _ := io.ReadFull(r, b)
	return b[:n]
}

func (h *Handler) deleteBlob(ctx context.Context, key string) {
	if err := h.store.Blobs.Delete(context.WithoutCancel(ctx), key); err != nil {
		h.log.Warn("tus: delete blob", "key", key, "err", err) // the orphan sweep retries
	}
}

// Terminate forgets the upload and drops its partial bytes. A finished
// file stays where it is; only the upload URL goes.
func (u *upload) Terminate(ctx context.Context) error {
	if u.fresh {
		return nil
	}
	if rs := stateFrom(ctx); rs != nil {
		rs.finished = true // gone, or in doubt: nothing to hand on
	}
	if u.s.Status == StatusNew {
		if err := u.h.store.Blobs.Discard(ctx, u.s.ID); err != nil {
			return modelErr(model.BlobErr(err))
		}
	}
	return modelErr(u.h.deleteSession(ctx, u.s.ID))
}

// DeclareLength fixes the length of a deferred-length upload, within the
// quota.
func (u *upload) DeclareLength(ctx context.Context, length int64) error {
	if rs := stateFrom(ctx); rs != nil {
		if err := u.h.checkQuota(ctx, rs.caller, length-u.offset); err != nil {
			return modelErr(err)
		}
	}
	u.s.Size, u.s.SizeDeferred = length, false
	_, err := u.h.db.NewUpdate().Model(u.s).ModelTableExpr("upload_sessions").
		Column("size", "size_deferred").Where("id = ?", u.s.ID).Exec(ctx)
	if rs := stateFrom(ctx); rs != nil && err != nil {
		rs.sessStale = true
	}
	return modelErr(dbErr(err))
}

// recheckEvery is how often a long PATCH asks again whether its caller
// may still write to the target folder.
const recheckEvery = time.Second

// revocable stops a body stream once the caller's write access is gone,
// so revoking a grant or a membership also stops PATCHes under way, not
// only the next one. The bytes already received are kept (the blob
// store keeps what it read), so a caller whose access comes back resumes.
type revocable struct {
	r     io.Reader
	every time.Duration
	last  time.Time
	still func() bool
}

func (v *revocable) Read(p []byte) (int, error) {
	if time.Since(v.last) >= v.every {
		v.last = time.Now()
		if !v.still() {
			return 0, errForbidden
		}
	}
	return v.r.Read(p)
}
