package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// folderMIME is the mimeType a folder reports; folders have no content.
const folderMIME = "inode/directory"

// fileMetadata is the FileMetadata object of the API.
type fileMetadata struct {
	ID                string       `json:"id"`
	Name              string       `json:"name"`
	Path              string       `json:"path"`
	MimeType          string       `json:"mimeType"`
	Size              int64        `json:"size"`
	SHA256            string       `json:"sha256"`
	CreatorID         string       `json:"creatorId"`
	Tags              []string     `json:"tags"`
	Title             string       `json:"title"`
	Description       string       `json:"description"`
	Source            string       `json:"source"`
	PHI               bool         `json:"phi"`
	Status            string       `json:"status"`
	CreationTimestamp time.Time    `json:"creationTimestamp"`
	UpdateTimestamp   time.Time    `json:"updateTimestamp"`
	Tokens            *[]tokenJSON `json:"tokens,omitempty"`
}

// nodeStatus is a node's status as the API names it.
func nodeStatus(n *model.Node) string {
	if n.Archived() {
		return "archived"
	}
	return n.Status
}

func toMetadata(n *model.Node) fileMetadata {
	m := fileMetadata{ID: n.ID, Name: n.Name, Path: n.Path, MimeType: n.MimeType, Size: n.Size, SHA256: n.SHA256,
		CreatorID: n.CreatorID, Tags: n.Tags, Title: n.Title, Description: n.Description, Source: n.Source,
		PHI: n.PHI, Status: nodeStatus(n), CreationTimestamp: n.CreatedAt, UpdateTimestamp: n.UpdatedAt}
	if m.Tags == nil {
		m.Tags = []string{}
	}
	if n.IsDir {
		m.MimeType = folderMIME
	}
	return m
}

// metadata returns n's FileMetadata for the request's principal: with the
// list of tokens (never their secrets) only for callers with full access.
func (a *api) metadata(r *http.Request, n *model.Node) (fileMetadata, error) {
	m := toMetadata(n)
	if !n.IsDir && a.may(r, policy.ActShare, n) {
		ts, err := a.s.repo.Tokens(r.Context(), n.ID)
		if err != nil {
			return m, err
		}
		list := make([]tokenJSON, 0, len(ts))
		for _, t := range ts {
			list = append(list, toTokenJSON(t, ""))
		}
		m.Tokens = &list
	}
	return m, nil
}

func (a *api) writeMetadata(w http.ResponseWriter, r *http.Request, status int, n *model.Node) {
	m, err := a.metadata(r, n)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	if !n.IsDir {
		w.Header().Set("ETag", n.ETag)
	}
	writeJSON(w, status, m)
}

// getFile serves GET /api/v1/files/{id}: the metadata, to callers with
// stat on the file or the global view_files permission.
func (a *api) getFile(w http.ResponseWriter, r *http.Request) {
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActStat, policy.ActViewFiles) {
		return
	}
	a.writeMetadata(w, r, http.StatusOK, n)
}

// uploadFields are the fields of POST /api/v1/files.
type uploadFields struct {
	name, folder, parentID, mimeType string
	meta                             model.FileMeta
}

func parseUploadFields(v url.Values) (uploadFields, error) {
	f := uploadFields{name: v.Get("name"), folder: v.Get("folder"), parentID: v.Get("parentId"), mimeType: v.Get("mimeType")}
	f.meta = model.FileMeta{Title: v.Get("title"), Description: v.Get("description"), Source: v.Get("source")}
	for _, t := range v["tags"] {
		f.meta.Tags = append(f.meta.Tags, strings.Split(t, ",")...)
	}
	if p := v.Get("phi"); p != "" {
		b, err := strconv.ParseBool(p)
		if err != nil {
			return f, fmt.Errorf("%w: phi must be true or false", model.ErrInvalid)
		}
		f.meta.PHI = b
	}
	if f.mimeType != "" {
		f.mimeType = strings.TrimSpace(f.mimeType)
		if _, _, ok := strings.Cut(model.BaseMIME(f.mimeType), "/"); !ok {
			return f, fmt.Errorf("%w: mimeType must look like type/subtype", model.ErrInvalid)
		}
	}
	if f.folder != "" && f.parentID != "" {
		return f, fmt.Errorf("%w: give folder or parentId, not both", model.ErrInvalid)
	}
	return f, nil
}

// activeTypes are types a browser would run; when the content looks like
// one, it wins over a declared type, so HTML declared as image/png is
// still recorded (and force-downloaded) as HTML.
var activeTypes = map[string]bool{"text/html": true, "image/svg+xml": true, "application/xml": true,
	"text/xml": true, "application/xhtml+xml": true, "text/javascript": true, "application/javascript": true}

func chooseMIME(declared, sniffed string) string {
	if declared == "" || (activeTypes[model.BaseMIME(sniffed)] && model.BaseMIME(sniffed) != model.BaseMIME(declared)) {
		return sniffed
	}
	return declared
}

// upload is a create request in progress: where it goes, and the blob it
// streamed, which is deleted unless it ends up recorded.
type upload struct {
	a       *api
	f       uploadFields
	parent  *model.Node
	content *model.Content
	sniffed string
}

func (u *upload) discard(ctx context.Context) {
	if u.content != nil {
		if err := u.a.s.store.Blobs.Delete(context.WithoutCancel(ctx), u.content.BlobKey); err != nil {
			u.a.s.logger(ctx).Warn("delete unrecorded blob", "err", err)
		}
		u.content = nil
	}
}

// createFile serves POST /api/v1/files: multipart/form-data with the
// content in the part "file" (fields before or after it; folder and
// parentId before it), or a raw body with the fields as query parameters.
// It needs write on the target folder, creates missing folders of a
// folder path, and mints one full token, returned once in tokens.
func (a *api) createFile(w http.ResponseWriter, r *http.Request) {
	u := &upload{a: a}
	defer u.discard(r.Context())
	ct := r.Header.Get("Content-Type")
	var err error
	if strings.HasPrefix(strings.ToLower(ct), "multipart/form-data") {
		err = u.readMultipart(w, r)
	} else {
		err = u.readRaw(w, r)
	}
	if err == nil && u.content == nil {
		err = fmt.Errorf("%w: the request has no part named file", model.ErrInvalid)
	}
	if err == nil && u.f.meta.PHI {
		// phi may follow the file part; check again now that it is known.
		err = a.checkPHIExposure(r, u.parent)
	}
	var n *model.Node
	var tok *model.FileToken
	var cred string
	if err == nil {
		n, tok, cred, err = a.recordUpload(r, u)
	}
	if err != nil {
		if !errors.Is(err, errAnswered) {
			a.writeAPIError(w, r, err)
		}
		return
	}
	m := toMetadata(n)
	list := []tokenJSON{toTokenJSON(tok, cred)}
	m.Tokens = &list
	w.Header().Set("Location", APIPrefix+"files/"+n.ID)
	w.Header().Set("ETag", n.ETag)
	writeJSON(w, http.StatusCreated, m)
}

// errAnswered means the response has been written already.
var errAnswered = errors.New("answered")

// target resolves and authorizes the folder once the fields that name it
// are known.
func (u *upload) target(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	parent, missing, err := u.a.resolveFolder(ctx, u.f.folder, u.f.parentID)
	if err != nil {
		return err
	}
	if !u.a.allow(w, r, parent, policy.ActWrite) {
		return errAnswered
	}
	if !parent.IsDir {
		return fmt.Errorf("%w: folder names a file", model.ErrConflict)
	}
	actor := PrincipalFrom(ctx).ActorID()
	for _, name := range missing {
		f, err := u.a.s.repo.CreateFolder(ctx, parent, name, actor)
		if errors.Is(err, model.ErrExists) {
			f, err = u.a.s.repo.LiveByPath(ctx, model.JoinPath(parent.Path, name))
		}
		if err != nil {
			return err
		}
		parent = f
	}
	u.parent = parent
	return nil
}

func (u *upload) readRaw(w http.ResponseWriter, r *http.Request) error {
	f, err := parseUploadFields(r.URL.Query())
	if err != nil {
		return err
	}
	u.f = f
	if u.f.name == "" {
		return fmt.Errorf("%w: name is required", model.ErrInvalid)
	}
	if err := u.target(w, r); err != nil {
		return err
	}
	// Refused before the body when its announced length cannot fit; the
	// record checks again, atomically.
	if err := u.a.s.store.QuotaRoom(r.Context(), PrincipalFrom(r.Context()).Quota(), nil, r.ContentLength); err != nil {
		return err
	}
	c, sniffed, err := u.a.s.store.WriteBlob(r.Context(), u.f.name, r.Body, u.a.s.cfg.MaxUploadBytes)
	if err != nil {
		return err
	}
	u.content, u.sniffed = &c, sniffed
	return nil
}

// maxFieldBytes bounds one multipart form field.
const maxFieldBytes = 64 << 10

func (u *upload) readMultipart(w http.ResponseWriter, r *http.Request) error {
	mr, err := r.MultipartReader()
	if err != nil {
		return fmt.Errorf("%w: multipart body: %v", model.ErrInvalid, err)
	}
	values := r.URL.Query()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: multipart body: %v", model.ErrInvalid, err)
		}
		if err := u.readPart(w, r, part, values); err != nil {
			part.Close()
			return err
		}
		part.Close()
	}
	f, err := parseUploadFields(values)
	if err != nil {
		return err
	}
	if u.parent != nil && (f.folder != u.f.folder || f.parentID != u.f.parentID) {
		return fmt.Errorf("%w: folder and parentId must come before the file part", model.ErrInvalid)
	}
	if f.name == "" {
		f.name = u.f.name
	}
	u.f = f
	return nil
}

func (u *upload) readPart(w http.ResponseWriter, r *http.Request, part *multipart.Part, values url.Values) error {
	if part.FormName() != "file" {
		b, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
		if err != nil {
			return fmt.Errorf("%w: multipart field: %v", model.ErrInvalid, err)
		}
		if len(b) > maxFieldBytes {
			return fmt.Errorf("%w: field %s", model.ErrTooLarge, part.FormName())
		}
		values.Add(part.FormName(), string(b))
		return nil
	}
	if u.content != nil {
		return fmt.Errorf("%w: more than one file part", model.ErrInvalid)
	}
	f, err := parseUploadFields(values)
	if err != nil {
		return err
	}
	if f.name == "" {
		f.name = part.FileName()
	}
	u.f = f
	if err := u.target(w, r); err != nil {
		return err
	}
	name := f.name
	if name == "" {
		name = "upload"
	}
	c, sniffed, err := u.a.s.store.WriteBlob(r.Context(), name, part, u.a.s.cfg.MaxUploadBytes)
	if err != nil {
		return err
	}
	u.content, u.sniffed = &c, sniffed
	return nil
}

// recordUpload writes the node for a streamed upload and mints its full token
// with the token's grant in the same transaction. A failure removes the
// new file again, so no file is left that nobody holds a token for.
func (a *api) recordUpload(r *http.Request, u *upload) (*model.Node, *model.FileToken, string, error) {
	ctx := r.Context()
	actor := PrincipalFrom(ctx).ActorID()
	meta := u.f.meta
	if u.f.mimeType != "" || u.sniffed != "" {
		meta.MimeType = chooseMIME(u.f.mimeType, u.sniffed)
	}
	if err := a.unlocked(ctx, nil, false, u.parent.Path); err != nil {
		return nil, nil, "", err
	}
	cond := model.Cond{NoOverwrite: true, Quota: PrincipalFrom(ctx).Quota()}
	n, _, _, err := a.s.repo.PutFile(ctx, u.parent, u.f.name, *u.content, meta, actor, cond)
	if err != nil {
		return nil, nil, "", err
	}
	u.content = nil // recorded: the node owns the blob now
	tok, cred, err := a.mintToken(ctx, n, model.LevelFull, actor, nil)
	if err != nil {
		if perr := a.s.store.Purge(context.WithoutCancel(ctx), n.ID); perr != nil {
			a.s.logger(ctx).Error("remove file after failed token mint", "err", perr)
		}
		return nil, nil, "", err
	}
	return n, tok, cred, nil
}

// mintToken inserts a token row and its g2 grant in one transaction.
func (a *api) mintToken(ctx context.Context, n *model.Node, level, actor string, expires *time.Time) (*model.FileToken, string, error) {
	var tok *model.FileToken
	var cred string
	var commit func()
	err := a.s.repo.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var err error
		tok, cred, err = a.s.repo.InsertToken(ctx, tx, n.ID, level, actor, expires)
		if err != nil {
			return err
		}
		commit, err = a.pol.ApplyTx(ctx, tx, policy.Change{Add: [][]string{
			policy.Grant(policy.Token(tok.ID), policy.Level(level), n.ID)}})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	commit()
	return tok, cred, nil
}

// resolveFolder finds the folder an upload or move names: by id, or by a
// path whose missing tail it returns for the caller to create after
// authorizing write on the deepest existing folder. Empty means the root.
// The node found may be a file: callers authorize before they answer that
// it is not a folder, so the answer tells nothing to a caller who may not
// write there.
func (a *api) resolveFolder(ctx context.Context, folder, parentID string) (*model.Node, []string, error) {
	if parentID != "" {
		p, err := a.s.repo.NodeByID(ctx, parentID)
		if err != nil {
			return nil, nil, err
		}
		if p.Archived() || p.Status != model.StatusCompleted {
			return nil, nil, model.ErrNotFound
		}
		return p, nil, nil
	}
	clean, err := model.CleanPath(folder)
	if err != nil {
		return nil, nil, err
	}
	var missing []string
	for p := clean; ; {
		n, err := a.s.repo.LiveByPath(ctx, p)
		if err == nil {
			return n, missing, nil
		}
		if !errors.Is(err, model.ErrNotFound) {
			return nil, nil, err
		}
		parent, name := model.SplitPath(p)
		missing = append([]string{name}, missing...)
		p = parent
	}
}

// checkPHIExposure refuses (409) to put PHI where anonymous callers may
// read it, unless the admin setting allows public PHI.
func (a *api) checkPHIExposure(r *http.Request, where *model.Node) error {
	if !a.pol.Decide(r.Context(), policy.Anonymous, policy.ActRead, where.Lineage).Allowed {
		return nil
	}
	return a.publicPHIAllowed(r)
}

// publicPHIAllowed returns errPHIPublic unless the files settings allow
// public PHI.
func (a *api) publicPHIAllowed(r *http.Request) error {
	fs, err := a.s.repo.FileSettings(r.Context())
	if err != nil {
		return err
	}
	if fs.AllowPublicPHI {
		return nil
	}
	return errPHIPublic
}

// errPHIPublic is answered as 409 phi_public.
var errPHIPublic = fmt.Errorf("%w: phi files cannot be public", model.ErrConflict)

// writeAPIError answers err, giving errPHIPublic its own code.
func (a *api) writeAPIError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errPHIPublic) {
		writeJSONError(w, http.StatusConflict, "phi_public",
			"Files flagged phi cannot be public unless an admin allows it in the files settings.")
		return
	}
	a.s.writeError(w, r, err)
}

// tagList accepts tags as a JSON array or a comma-separated string.
type tagList []string

func (t *tagList) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*t = list
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("tags must be an array of strings or a comma-separated string")
	}
	*t = strings.Split(s, ",")
	return nil
}

// patchBody is the body of PATCH /api/v1/files/{id}; absent fields stay.
type patchBody struct {
	Name        *string  `json:"name"`
	ParentID    *string  `json:"parentId"`
	Folder      *string  `json:"folder"`
	Tags        *tagList `json:"tags"`
	Title       *string  `json:"title"`
	Description *string  `json:"description"`
	Source      *string  `json:"source"`
	PHI         *bool    `json:"phi"`
}

// patchFile serves PATCH /api/v1/files/{id}: rename or move (write on the
// node and on the new folder) and descriptive metadata (write).
func (a *api) patchFile(w http.ResponseWriter, r *http.Request) {
	var b patchBody
	if err := readJSON(r, &b); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActWrite) {
		return
	}
	if n.Archived() {
		a.s.writeError(w, r, model.ErrNotFound)
		return
	}
	ctx := r.Context()
	if b.Name != nil || b.ParentID != nil || b.Folder != nil {
		name := n.Name
		if b.Name != nil {
			name = *b.Name
		}
		dst, err := a.s.repo.NodeByID(ctx, n.ParentID)
		if b.ParentID != nil || b.Folder != nil {
			var missing []string
			dst, missing, err = a.resolveFolder(ctx, deref(b.Folder), deref(b.ParentID))
			if err == nil && len(missing) > 0 {
				err = model.ErrNotFound
			}
		}
		if err != nil {
			a.s.writeError(w, r, err)
			return
		}
		if b.Folder != nil && dst.ID != n.ParentID && !a.may(r, policy.ActStat, dst) {
			// A folder path the caller may not see answers as a missing one
			// does, as in WebDAV, so probing paths reveals nothing.
			a.s.writeError(w, r, model.ErrNotFound)
			return
		}
		if dst.ID != n.ParentID && !a.allow(w, r, dst, policy.ActWrite) {
			return
		}
		if !dst.IsDir {
			a.s.writeError(w, r, fmt.Errorf("%w: the destination is not a folder", model.ErrConflict))
			return
		}
		if (n.PHI || (b.PHI != nil && *b.PHI)) && dst.ID != n.ParentID {
			if err := a.checkPHIExposure(r, dst); err != nil {
				a.writeAPIError(w, r, err)
				return
			}
		}
		if err := a.unlocked(ctx, []string{n.Path}, true, parentPath(n.Path), dst.Path); err != nil {
			a.s.writeError(w, r, err)
			return
		}
		moved, _, err := a.s.repo.Move(ctx, n, dst, name, false)
		if err != nil {
			a.s.writeError(w, r, err)
			return
		}
		n = moved
	}
	if b.PHI != nil && *b.PHI && !n.PHI {
		if err := a.checkPHIExposure(r, n); err != nil {
			a.writeAPIError(w, r, err)
			return
		}
	}
	p := model.MetaPatch{Title: b.Title, Description: b.Description, Source: b.Source, PHI: b.PHI}
	if b.Tags != nil {
		tags := []string(*b.Tags)
		p.Tags = &tags
	}
	if p != (model.MetaPatch{}) {
		updated, err := a.s.repo.UpdateMeta(ctx, n.ID, p)
		if err != nil {
			a.s.writeError(w, r, err)
			return
		}
		n = updated
	}
	a.writeMetadata(w, r, http.StatusOK, n)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// putContent serves PUT /api/v1/files/{id}/content: new content streamed
// from the body, honouring If-Match against the current ETag.
func (a *api) putContent(w http.ResponseWriter, r *http.Request) {
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActWrite) {
		return
	}
	if n.Archived() || n.IsDir {
		a.s.writeError(w, r, model.ErrNotFound)
		return
	}
	if err := a.unlocked(r.Context(), []string{n.Path}, false); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	cond := model.Cond{IfMatch: r.Header.Get("If-Match"), Quota: PrincipalFrom(r.Context()).Quota()}
	if err := a.s.store.QuotaRoom(r.Context(), cond.Quota, n, r.ContentLength); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	declared := r.URL.Query().Get("mimeType")
	// Replace sniffs the type when none is declared; a declared type is
	// checked against the sniffed one after the write.
	out, err := a.s.store.Replace(r.Context(), model.ReplaceRequest{Node: n, Body: r.Body, Cond: cond,
		MaxSize: a.s.cfg.MaxUploadBytes,
		// A WebDAV lock taken while the body came stops the switch, as
		// it stops a WebDAV PUT.
		BeforeRecord: func(ctx context.Context) error { return a.unlocked(ctx, []string{n.Path}, false) }})
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	if declared != "" {
		if mt := chooseMIME(declared, out.MimeType); mt != out.MimeType {
			if out, err = a.s.repo.UpdateMeta(r.Context(), out.ID, model.MetaPatch{MimeType: &mt}); err != nil {
				a.s.writeError(w, r, err)
				return
			}
		}
	}
	a.writeMetadata(w, r, http.StatusOK, out)
}

// deleteFile serves DELETE /api/v1/files/{id}: archive, or with
// ?purge=true remove the bytes, the metadata, the tokens and every grant
// on the node and below it, for good.
func (a *api) deleteFile(w http.ResponseWriter, r *http.Request) {
	purge, _ := strconv.ParseBool(r.URL.Query().Get("purge"))
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActDelete) {
		return
	}
	ctx := r.Context()
	if err := a.unlocked(ctx, []string{n.Path}, true, parentPath(n.Path)); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	if !purge {
		if _, err := a.s.repo.Archive(ctx, n.ID); err != nil {
			a.s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	ids := []string{n.ID}
	if n.IsDir {
		below, err := a.s.repo.SearchNodes(ctx, model.Search{Archived: true, Folders: true,
			Within: []string{n.Lineage}, Limit: 1 << 20})
		if err != nil {
			a.s.writeError(w, r, err)
			return
		}
		for _, x := range below {
			if x.ID != n.ID {
				ids = append(ids, x.ID)
			}
		}
	}
	if err := a.s.store.Purge(ctx, n.ID); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	var ch policy.Change
	for _, id := range ids {
		ch.RemoveMatching = append(ch.RemoveMatching,
			policy.Filter{Ptype: "g2", Values: []string{"", "", id}},
			policy.Filter{Ptype: "p", Values: []string{"", id}})
	}
	if err := a.pol.Apply(context.WithoutCancel(ctx), ch); err != nil {
		// The node is gone and ids are never reused, so stale lines grant
		// nothing; they only take space.
		a.s.logger(ctx).Error("remove grants of purged nodes", "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
}

// restoreFile serves POST /api/v1/files/{id}/restore.
func (a *api) restoreFile(w http.ResponseWriter, r *http.Request) {
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActDelete) {
		return
	}
	out, err := a.s.repo.Restore(r.Context(), n.ID)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	a.writeMetadata(w, r, http.StatusOK, out)
}
