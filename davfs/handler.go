package davfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	"golang.org/x/net/webdav"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob"
)

// The authorizer's actions the Handler asks for (policy.ActStat and
// friends; davfs does not import the policy package).
const (
	actStat   = "stat"
	actRead   = "read"
	actWrite  = "write"
	actDelete = "delete"
)

// Decider is the one authorizer: may subject do act on obj (a node's
// lineage)? The gateway passes policy.Authorizer.Decide(...).Allowed.
type Decider func(ctx context.Context, sub, act, obj string) bool

// Config configures a Handler.
type Config struct {
	// Prefix is the URL path the door is mounted at, without a trailing
	// slash: "/dav".
	Prefix string
	// Decide is the authorizer; required. It is asked once per operation
	// (twice for COPY and MOVE), so it may record every decision.
	Decide Decider
	// Visible answers the same question for the checks that are not an
	// operation: whether a refused caller may see the node (404 or 403),
	// and which children a filtered listing shows. An auditing gateway
	// passes the unrecorded decision here; nil uses Decide.
	Visible Decider
	// Challenge answers a refusal to an anonymous caller, normally 401
	// with a WWW-Authenticate header. Nil writes a Basic challenge.
	Challenge func(w http.ResponseWriter, r *http.Request)
	// MaxUploadBytes caps a PUT body; zero means no cap.
	MaxUploadBytes int64
	// Listings, when set, keeps rendered folder listings between
	// requests (see ListingCache); nil renders every listing.
	Listings *ListingCache
	// Log receives unexpected errors; nil discards them.
	Log *slog.Logger
}

// Handler serves WebDAV (RFC 4918 class 1 and 2) over an FS. It answers
// every method itself, asks cfg.Decide once per operation with the
// actor's subject, the action and the node's lineage (the parent's for a
// creation), and never reads a request body before it has decided.
//
// Client quirks it handles: every answer carries "DAV: 1, 2" and
// "MS-Author-Via: DAV"; OPTIONS needs no credentials and touches no data,
// so the Windows Mini-Redirector and Finder can probe before they log in;
// X-OC-Mtime on PUT and PROPPATCH of getlastmodified or
// Win32LastModifiedTime set the modification time; macOS "._*" and
// ".DS_Store" files are stored like any file (Finder reads them back) but
// left out of listings for every client that is not macOS's WebDAVFS, so
// Windows, Linux and rclone never see them.
type Handler struct {
	fs  *FS
	cfg Config
	log *slog.Logger
}

// NewHandler returns a Handler over fs. It panics when cfg.Decide is nil,
// because a door without an authorizer must not start.
func NewHandler(fs *FS, cfg Config) *Handler {
	if cfg.Decide == nil {
		panic("davfs: Config.Decide is required")
	}
	if cfg.Visible == nil {
		cfg.Visible = cfg.Decide
	}
	cfg.Prefix = strings.TrimSuffix(cfg.Prefix, "/")
	if cfg.Challenge == nil {
		cfg.Challenge = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="filegate", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{fs: fs, cfg: cfg, log: log}
}

// allowMethods is the Allow header of every resource.
const allowMethods = "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, COPY, MOVE, PROPFIND, PROPPATCH, LOCK, UNLOCK"

// request is one request's parsed, validated state.
type request struct {
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	actor Actor
	path  string    // clean path, the one the authorizer and the store see
	ifh   *ifHeader // nil without an If header
	// noLocks says the lookup that found the request's nodes also found
	// no lock that could bear on the change, so preconditions need not
	// ask again.
	noLocks bool
}

// ServeHTTP validates the path and the common headers, then dispatches.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("DAV", "1, 2")
	w.Header().Set("MS-Author-Via", "DAV")
	p, err := requestPath(h.cfg.Prefix, r.URL)
	if errors.Is(err, errOutside) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	q := &request{w: w, r: r, ctx: r.Context(), actor: ActorFrom(r.Context()), path: p}
	if v := r.Header.Get("If"); v != "" {
		if q.ifh, err = parseIf(v); err != nil {
			http.Error(w, "malformed If header", http.StatusBadRequest)
			return
		}
	}
	switch r.Method {
	case http.MethodOptions:
		h.options(q)
	case http.MethodGet, http.MethodHead:
		h.get(q)
	case http.MethodPut:
		h.put(q)
	case http.MethodDelete:
		h.delete(q)
	case "MKCOL":
		h.mkcol(q)
	case "COPY", "MOVE":
		h.copyMove(q)
	case "PROPFIND":
		h.propfind(q)
	case "PROPPATCH":
		h.proppatch(q)
	case "LOCK":
		h.lock(q)
	case "UNLOCK":
		h.unlock(q)
	default:
		w.Header().Set("Allow", allowMethods)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// errOutside marks a URL that is not under the door's prefix.
var errOutside = errors.New("outside the WebDAV tree")

// requestPath turns a request URL into the clean path that both the
// authorizer and the store see: the decoded path below prefix through
// model.CleanPath. It returns errOutside for a path not under prefix and
// model.ErrInvalid for one CleanPath refuses or with an encoded NUL.
func requestPath(prefix string, u *url.URL) (string, error) {
	rel, ok := strings.CutPrefix(u.Path, prefix)
	if !ok || (rel != "" && rel[0] != '/') {
		return "", errOutside
	}
	if strings.Contains(u.RawPath, "%00") {
		return "", fmt.Errorf("%w: encoded NUL in path", model.ErrInvalid)
	}
	return model.CleanPath(rel)
}

// allowed asks the authorizer whether the actor may do act on the node
// with that lineage: the decision on the operation itself.
func (h *Handler) allowed(q *request, act, lineage string) bool {
	return h.cfg.Decide(q.ctx, q.actor.Subject, act, lineage)
}

// sees asks the same question as allowed for a check that is not the
// operation itself (cfg.Visible).
func (h *Handler) sees(q *request, act, lineage string) bool {
	return h.cfg.Visible(q.ctx, q.actor.Subject, act, lineage)
}

func parentLineage(lineage string) string {
	if i := strings.LastIndexByte(lineage, '/'); i > 0 {
		return lineage[:i]
	}
	return ""
}

// privilegeOf names an action as an RFC 3744 privilege for error bodies.
var privilegeOf = map[string]string{actRead: "read", actStat: "read", actWrite: "write", actDelete: "unbind"}

// refuse answers a request the authorizer denied on the node at p: 401
// for an anonymous caller (who may have credentials that work), 404 for
// a caller who may not even stat the node or its parent (so denial
// reveals nothing), and otherwise 403 with a DAV:need-privileges body.
func (h *Handler) refuse(q *request, act, p, lineage string) {
	if q.actor.Anonymous {
		h.cfg.Challenge(q.w, q.r)
		return
	}
	if !h.sees(q, actStat, lineage) && !h.sees(q, actStat, parentLineage(lineage)) {
		http.Error(q.w, "not found", http.StatusNotFound)
		return
	}
	writeError(q.w, http.StatusForbidden, "<D:need-privileges><D:resource>"+hrefElem(h.cfg.Prefix, p, false)+
		"<D:privilege><D:"+privilegeOf[act]+"/></D:privilege></D:resource></D:need-privileges>")
}

// missing answers a request whose resource (or, with status 409, whose
// parent) does not exist. The answer is status only if the caller may
// stat the nearest folder that does exist; otherwise it is what a denial
// would be, so probing reveals nothing about names the caller cannot see.
func (h *Handler) missing(q *request, p string, status int) {
	above := ancestors(p)
	nodes, err := h.fs.liveMany(q.ctx, above...)
	if err != nil {
		h.fail(q, err)
		return
	}
	for i := len(above) - 1; i >= 0; i-- {
		if n := nodes[above[i]]; n != nil {
			if h.sees(q, actStat, n.Lineage) {
				http.Error(q.w, http.StatusText(status), status)
				return
			}
			break
		}
	}
	if q.actor.Anonymous {
		h.cfg.Challenge(q.w, q.r)
		return
	}
	http.Error(q.w, "not found", http.StatusNotFound)
}

// target loads the live node at the request path and checks that the
// actor may do act on it. When it may not, or the node is missing, it
// answers and returns nil.
func (h *Handler) target(q *request, act string) *model.Node {
	n, err := h.fs.live(q.ctx, q.path)
	if errors.Is(err, model.ErrNotFound) {
		h.missing(q, q.path, http.StatusNotFound)
		return nil
	}
	if err != nil {
		h.fail(q, err)
		return nil
	}
	if !h.allowed(q, act, n.Lineage) {
		h.refuse(q, act, q.path, n.Lineage)
		return nil
	}
	return n
}

// fail answers an error from the store or the lock system.
func (h *Handler) fail(q *request, err error) {
	var status int
	switch {
	case errors.Is(err, context.Canceled):
		return // the client is gone
	case errors.Is(err, model.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, model.ErrExists), errors.Is(err, model.ErrPrecondition):
		status = http.StatusPreconditionFailed
	case errors.Is(err, model.ErrConflict), errors.Is(err, model.ErrNotEmpty):
		status = http.StatusConflict
	case errors.Is(err, model.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, model.ErrTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, model.ErrQuota):
		// RFC 4331 section 6: the precondition the write broke.
		writeError(q.w, http.StatusInsufficientStorage, "<D:quota-not-exceeded/>")
		return
	case errors.Is(err, model.ErrNoSpace):
		status = http.StatusInsufficientStorage
	case errors.Is(err, webdav.ErrLocked):
		status = http.StatusLocked
	case errors.Is(err, os.ErrDeadlineExceeded):
		status = http.StatusRequestTimeout // the body stalled (the gateway's idle deadline)
	case errors.Is(err, model.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		q.w.Header().Set("Retry-After", "5")
		status = http.StatusServiceUnavailable
	case errors.Is(err, model.ErrCorrupt):
		// Deliberate, not a bug: the store has logged the damage with the
		// file's path.
		http.Error(q.w, "The file's stored bytes are damaged; an administrator must restore them.", http.StatusInternalServerError)
		return
	default:
		// A driver error from a query outside the repository (locks,
		// properties) still means a full disk or a database away.
		if m := model.DBErr(err); errors.Is(m, model.ErrNoSpace) || errors.Is(m, model.ErrUnavailable) || errors.Is(m, model.ErrInvalid) {
			h.fail(q, m)
			return
		}
		h.log.Error("webdav request failed", "method", q.r.Method, "err", err)
		status = http.StatusInternalServerError
	}
	http.Error(q.w, http.StatusText(status), status)
}

// destination parses the Destination header of COPY and MOVE into a clean
// path. It answers 502 for another host (RFC 4918 section 9.8.5), 400 for
// a malformed or traversing one, and reports ok=false when it answered.
func (h *Handler) destination(q *request) (string, bool) {
	v := q.r.Header.Get("Destination")
	if v == "" {
		http.Error(q.w, "Destination header required", http.StatusBadRequest)
		return "", false
	}
	u, err := url.Parse(v)
	if err != nil || strings.Contains(v, "\\") || strings.Contains(strings.ToLower(v), "%00") {
		http.Error(q.w, "malformed Destination", http.StatusBadRequest)
		return "", false
	}
	if u.Host != "" && !strings.EqualFold(u.Host, q.r.Host) {
		http.Error(q.w, "Destination is on another server", http.StatusBadGateway)
		return "", false
	}
	p, err := requestPath(h.cfg.Prefix, u)
	if errors.Is(err, errOutside) {
		http.Error(q.w, "Destination is outside the WebDAV tree", http.StatusBadGateway)
		return "", false
	}
	if err != nil {
		http.Error(q.w, "malformed Destination", http.StatusBadRequest)
		return "", false
	}
	return p, true
}

// options answers without authorization and without touching the store:
// Windows and Finder probe OPTIONS before they send credentials, and a
// fixed answer reveals nothing about what exists.
func (h *Handler) options(q *request) {
	q.w.Header().Set("Allow", allowMethods)
	q.w.Header().Set("Accept-Ranges", "bytes")
	q.w.Header().Set("Content-Length", "0")
	q.w.WriteHeader(http.StatusOK)
}

// get serves a file's content with Range, ETag, Last-Modified and the
// If-* conditions of RFC 9110 through http.ServeContent.
func (h *Handler) get(q *request) {
	n := h.target(q, actRead)
	if n == nil {
		return
	}
	hdr := q.w.Header()
	hdr.Set("ETag", n.ETag)
	if n.IsDir {
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		hdr.Set("Last-Modified", n.ModTime.UTC().Format(http.TimeFormat))
		if q.r.Method == http.MethodHead {
			return
		}
		io.WriteString(q.w, "This is a WebDAV folder; open it with a WebDAV client.\n")
		return
	}
	rd, err := h.fs.store.Open(q.ctx, n)
	if err != nil {
		h.fail(q, err)
		return
	}
	defer rd.Close()
	ctype := n.MimeType
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	hdr.Set("Content-Type", ctype)
	// Stored files are never run by a browser that opens a /dav/ URL.
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	http.ServeContent(wideCopy{q.w}, q.r, "", n.ModTime, sendFile{rd})
}

// wideCopy sends the body in 4 MiB pieces (see blob.Copy), local files
// included: on loopback that measured faster than sendfile.
type wideCopy struct{ http.ResponseWriter }

func (w wideCopy) ReadFrom(src io.Reader) (int64, error) { return blob.Copy(w.ResponseWriter, src) }

// Unwrap lets http.ResponseController reach the connection.
func (w wideCopy) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// sendFile hides the blob reader's other methods from ServeContent, which
// only needs to read and seek.
type sendFile struct{ io.ReadSeeker }
