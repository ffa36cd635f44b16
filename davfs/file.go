package davfs

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"golang.org/x/net/webdav"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob"
)

// FileInfo describes a node from its metadata alone. It implements
// webdav.ContentTyper and webdav.ETager, so x/net/webdav's PROPFIND never
// opens the blob to sniff a type or hash an ETag.
type FileInfo struct {
	node *model.Node
}

var (
	_ webdav.ContentTyper = FileInfo{}
	_ webdav.ETager       = FileInfo{}
)

func infoOf(n *model.Node) FileInfo { return FileInfo{node: n} }

// Name is the node's name; the root's is "/".
func (i FileInfo) Name() string {
	if i.node.Path == "/" {
		return "/"
	}
	return i.node.Name
}

// Size is the content length; folders have 0.
func (i FileInfo) Size() int64 { return i.node.Size }

// Mode is a fixed permission set: access is the authorizer's business.
func (i FileInfo) Mode() fs.FileMode {
	if i.node.IsDir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}

// ModTime is the client-visible modification time.
func (i FileInfo) ModTime() time.Time { return i.node.ModTime }

// IsDir reports whether the node is a folder.
func (i FileInfo) IsDir() bool { return i.node.IsDir }

// Sys returns the *model.Node.
func (i FileInfo) Sys() any { return i.node }

// ContentType returns the MIME type recorded at upload.
func (i FileInfo) ContentType(context.Context) (string, error) {
	if i.node.IsDir {
		return "", webdav.ErrNotImplemented
	}
	if i.node.MimeType == "" {
		return "application/octet-stream", nil
	}
	return i.node.MimeType, nil
}

// ETag returns the stored, quoted ETag.
func (i FileInfo) ETag(context.Context) (string, error) { return i.node.ETag, nil }

// File is an open node. A file opened for reading opens its blob on the
// first Read or Seek that needs bytes; a folder lists its children from
// metadata; a file opened for writing streams into a new blob that Close
// commits only when every write succeeded. It is a webdav.DeadPropsHolder.
type File struct {
	fs   *FS
	ctx  context.Context
	node *model.Node

	r   blob.Reader
	off int64 // position before the blob is opened

	list []os.FileInfo
	pos  int

	w *writeState
}

var (
	_ webdav.File            = (*File)(nil)
	_ webdav.DeadPropsHolder = (*File)(nil)
	_ io.ReaderFrom          = (*File)(nil)
)

// writeState is a write in progress: the bytes flow through a pipe into
// Store.Put, which commits them only on a clean end of the pipe.
type writeState struct {
	pw     *io.PipeWriter
	done   chan error
	failed error
	closed bool
	node   *model.Node
}

func newWriteFile(ctx context.Context, f *FS, parent *model.Node, name string, existing *model.Node) *File {
	pr, pw := io.Pipe()
	ws := &writeState{pw: pw, done: make(chan error, 1)}
	// The node is a placeholder until Close: x/net/webdav's PUT takes Stat
	// before Close and reads the ETag from it after, so Close fills the
	// same value in with the committed node.
	pending := &model.Node{Name: name, Path: model.JoinPath(parent.Path, name)}
	if existing != nil {
		*pending = *existing
	}
	file := &File{fs: f, ctx: ctx, node: pending, w: ws}
	go func() {
		n, _, err := f.store.Put(ctx, model.PutRequest{Parent: parent, Name: name, Body: pr, Actor: ActorFrom(ctx).ID,
			Cond: model.Cond{Quota: ActorFrom(ctx).Quota}})
		pr.CloseWithError(err) // unblocks a writer if Put gave up early
		if err == nil {
			ws.node = n
		}
		ws.done <- err
	}()
	return file
}

// Close releases the blob reader, or for a write commits the new content
// unless a write or ReadFrom failed, in which case nothing changes.
func (f *File) Close() error {
	if f.w == nil {
		if f.r != nil {
			return f.r.Close()
		}
		return nil
	}
	if f.w.closed {
		return nil
	}
	f.w.closed = true
	if f.w.failed != nil {
		f.w.pw.CloseWithError(f.w.failed)
		<-f.w.done
		return f.w.failed
	}
	f.w.pw.Close()
	err := <-f.w.done
	if err == nil {
		*f.node = *f.w.node
	}
	return err
}

func (f *File) open() error {
	if f.r != nil {
		return nil
	}
	if f.node.IsDir {
		return fmt.Errorf("%w: is a folder", model.ErrConflict)
	}
	r, err := f.fs.store.Open(f.ctx, f.node)
	if err != nil {
		return err
	}
	if f.off != 0 {
		if _, err := r.Seek(f.off, io.SeekStart); err != nil {
			r.Close()
			return err
		}
	}
	f.r = r
	return nil
}

// Read reads content.
func (f *File) Read(p []byte) (int, error) {
	if f.w != nil {
		return 0, fmt.Errorf("%w: opened for writing", model.ErrInvalid)
	}
	if err := f.open(); err != nil {
		return 0, err
	}
	return f.r.Read(p)
}

// Seek moves the read position. Seeks before the first read are answered
// from metadata, so a caller that only asks for the size opens nothing.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	if f.w != nil {
		return 0, fmt.Errorf("%w: opened for writing", model.ErrInvalid)
	}
	if f.r != nil {
		return f.r.Seek(offset, whence)
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = f.off + offset
	case io.SeekEnd:
		abs = f.node.Size + offset
	default:
		return 0, fmt.Errorf("%w: whence", model.ErrInvalid)
	}
	if abs < 0 {
		return 0, fmt.Errorf("%w: negative position", model.ErrInvalid)
	}
	f.off = abs
	return abs, nil
}

// Readdir lists a folder's children from metadata with one query.
func (f *File) Readdir(count int) ([]os.FileInfo, error) {
	if !f.node.IsDir {
		return nil, fmt.Errorf("%w: not a folder", model.ErrConflict)
	}
	if f.list == nil {
		children, err := f.fs.repo.Children(f.ctx, f.node.ID, model.ListOptions{})
		if err != nil {
			return nil, err
		}
		f.list = make([]os.FileInfo, len(children))
		for i, c := range children {
			f.list[i] = infoOf(c)
		}
	}
	rest := f.list[f.pos:]
	if count <= 0 {
		f.pos = len(f.list)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(count, len(rest))]
	f.pos += len(rest)
	return rest, nil
}

// Stat describes the node from metadata.
func (f *File) Stat() (os.FileInfo, error) {
	if f.node == nil {
		return nil, pathError("stat", "", model.ErrNotFound)
	}
	return infoOf(f.node), nil
}

// Write streams bytes of a new content.
func (f *File) Write(p []byte) (int, error) {
	if f.w == nil {
		return 0, fmt.Errorf("%w: opened for reading", model.ErrInvalid)
	}
	if f.w.failed != nil {
		return 0, f.w.failed
	}
	n, err := f.w.pw.Write(p)
	if err != nil {
		f.w.failed = err
	}
	return n, err
}

// ReadFrom streams r into the new content. io.Copy prefers it over Write,
// so a failing source (a request body cut off midway) is seen here and
// the later Close commits nothing.
func (f *File) ReadFrom(r io.Reader) (int64, error) {
	if f.w == nil {
		return 0, fmt.Errorf("%w: opened for reading", model.ErrInvalid)
	}
	if f.w.failed != nil {
		return 0, f.w.failed
	}
	n, err := io.Copy(struct{ io.Writer }{f.w.pw}, r)
	if err != nil {
		f.w.failed = err
	}
	return n, err
}

// DeadProps returns the node's dead properties.
func (f *File) DeadProps() (map[xml.Name]webdav.Property, error) {
	if f.node == nil {
		return map[xml.Name]webdav.Property{}, nil
	}
	props, err := f.fs.props.get(f.ctx, f.node.ID)
	if err != nil {
		return nil, err
	}
	out := make(map[xml.Name]webdav.Property, len(props))
	for _, p := range props {
		out[p.XMLName] = p
	}
	return out, nil
}

// Patch applies PROPPATCH operations to the node's dead properties, all
// or none, and returns one Propstat per status as x/net/webdav expects.
func (f *File) Patch(patches []webdav.Proppatch) ([]webdav.Propstat, error) {
	if f.node == nil {
		return nil, pathError("proppatch", "", model.ErrNotFound)
	}
	var ops []patchOp
	var names []webdav.Property
	for _, p := range patches {
		for _, prop := range p.Props {
			ops = append(ops, patchOp{remove: p.Remove, name: prop.XMLName, lang: prop.Lang, value: prop.InnerXML})
			names = append(names, webdav.Property{XMLName: prop.XMLName})
		}
	}
	if err := f.fs.props.patch(f.ctx, f.node, ops); err != nil {
		if errors.Is(err, model.ErrTooLarge) {
			return []webdav.Propstat{{Status: 507, Props: names}}, nil
		}
		return nil, err
	}
	return []webdav.Propstat{{Status: 200, Props: names}}, nil
}
