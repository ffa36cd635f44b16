package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/policy"
)

// getContent serves GET and HEAD /api/v1/files/{id}/content to callers
// with read on the file (public files: anyone).
func (a *api) getContent(w http.ResponseWriter, r *http.Request) {
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActRead) {
		return
	}
	a.serveContent(w, r, n)
}

// serveContent streams a live file with Range, ETag and Last-Modified
// (http.ServeContent answers the conditional and range headers). Unless
// the file's type is allow-listed in the files settings it is sent as an
// attachment, and every answer forbids sniffing, runs any rendered content
// in a sandbox and sends no referrer, so a stored file cannot script the
// API's origin.
func (a *api) serveContent(w http.ResponseWriter, r *http.Request, n *model.Node) {
	if n.IsDir || n.Archived() || n.Status != model.StatusCompleted {
		a.s.writeError(w, r, model.ErrNotFound)
		return
	}
	fs, err := a.s.repo.FileSettings(r.Context())
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	body, err := a.s.store.Open(r.Context(), n)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	defer body.Close()
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "private, no-cache")
	mt := n.MimeType
	if mt == "" {
		mt = "application/octet-stream"
	}
	h.Set("Content-Type", mt)
	h.Set("ETag", n.ETag)
	disposition := "attachment"
	if fs.InlineAllowed(mt) {
		disposition = "inline"
	}
	h.Set("Content-Disposition", contentDisposition(disposition, n.Name))
	http.ServeContent(&jsonErrors{ResponseWriter: w}, r, n.Name, n.ModTime, body)
}

// jsonErrors turns the plain-text errors http.ServeContent writes (416,
// 412) into the API's JSON error body, and otherwise passes everything
// through; its ReadFrom sends the body in 4 MiB pieces (see blob.Copy).
type jsonErrors struct {
	http.ResponseWriter
	failed bool
}

func (j *jsonErrors) WriteHeader(code int) {
	if code < 400 {
		j.ResponseWriter.WriteHeader(code)
		return
	}
	j.failed = true
	j.Header().Del("Content-Disposition")
	j.Header().Del("Content-Length")
	code2, msg := "range_not_satisfiable", "The requested range lies outside the content."
	if code == http.StatusPreconditionFailed {
		code2, msg = "precondition_failed", "A precondition did not hold."
	} else if code != http.StatusRequestedRangeNotSatisfiable {
		code2, msg = "error", http.StatusText(code)
	}
	writeJSONError(j.ResponseWriter, code, code2, msg)
}

func (j *jsonErrors) Write(b []byte) (int, error) {
	if j.failed {
		return len(b), nil // the plain-text message is replaced
	}
	return j.ResponseWriter.Write(b)
}

func (j *jsonErrors) ReadFrom(src io.Reader) (int64, error) {
	if j.failed {
		return io.Copy(io.Discard, src)
	}
	return blob.Copy(j.ResponseWriter, src)
}

// contentDisposition builds an RFC 6266 header: a plain ASCII filename for
// old clients and filename* with the exact UTF-8 name (RFC 8187).
func contentDisposition(disposition, name string) string {
	var ascii strings.Builder
	for _, c := range name {
		switch {
		case c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '%' || c == ';':
			ascii.WriteByte('_')
		default:
			ascii.WriteRune(c)
		}
	}
	return disposition + `; filename="` + ascii.String() + `"; filename*=UTF-8''` + rfc8187(name)
}

// rfc8187 percent-encodes everything but the attr-char set.
func rfc8187(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
			strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// linkKey is a signing key: from config, or the database.
type linkKey struct {
	id     string
	secret []byte
}

// configKeyID names the configured key by a digest of it, so a changed
// key names itself differently and old links fail as "unknown key".
func configKeyID(secret []byte) string {
	sum := sha256.Sum256(secret)
	return "cfg" + base64.RawURLEncoding.EncodeToString(sum[:6])
}

func (a *api) currentLinkKey(r *http.Request) (linkKey, error) {
	if len(a.cfg.LinkKey) > 0 {
		return linkKey{id: configKeyID(a.cfg.LinkKey), secret: a.cfg.LinkKey}, nil
	}
	k, err := a.s.repo.CurrentSigningKey(r.Context())
	if err != nil {
		return linkKey{}, err
	}
	return linkKey{id: k.ID, secret: k.Bytes()}, nil
}

// linkKeyByID returns the key a link names, if it may still verify.
func (a *api) linkKeyByID(r *http.Request, id string) (linkKey, bool, error) {
	if len(a.cfg.LinkKey) > 0 {
		return linkKey{id: id, secret: a.cfg.LinkKey}, id == configKeyID(a.cfg.LinkKey), nil
	}
	k, err := a.s.repo.SigningKeyByID(r.Context(), id)
	if errors.Is(err, model.ErrNotFound) {
		return linkKey{}, false, nil
	}
	if err != nil {
		return linkKey{}, false, err
	}
	return linkKey{id: k.ID, secret: k.Bytes()}, true, nil
}

// linkSignature is HMAC-SHA256 over the method, the file id, the expiry
// and the key id, so a link is good for one file, one method, until one
// instant, under one key.
func linkSignature(key linkKey, method, fileID string, expires int64) string {
	m := hmac.New(sha256.New, key.secret)
	m.Write([]byte("filegate-link-v1\n" + method + "\n" + fileID + "\n" + strconv.FormatInt(expires, 10) + "\n" + key.id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// maxLinkTTL is the configured cap, lowered by the files settings.
func (a *api) maxLinkTTL(r *http.Request) (time.Duration, error) {
	fs, err := a.s.repo.FileSettings(r.Context())
	if err != nil {
		return 0, err
	}
	max := a.cfg.MaxLinkTTL
	if s := time.Duration(fs.MaxLinkSeconds) * time.Second; s > 0 && s < max {
		max = s
	}
	return max, nil
}

// createLink serves POST /api/v1/files/{id}/links {expiresIn}: a URL that
// serves the content without credentials until it expires. Issuing one
// shares the file, so it needs share.
func (a *api) createLink(w http.ResponseWriter, r *http.Request) {
	var b struct {
		ExpiresIn json.RawMessage `json:"expiresIn"`
	}
	if err := readJSON(r, &b); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActShare) {
		return
	}
	if n.IsDir || n.Archived() {
		a.s.writeError(w, r, model.ErrNotFound)
		return
	}
	ttl := a.cfg.DefaultLinkTTL
	if len(b.ExpiresIn) > 0 && string(b.ExpiresIn) != "null" {
		d, err := parseDuration(b.ExpiresIn)
		if err != nil {
			a.s.writeError(w, r, err)
			return
		}
		ttl = d
	}
	max, err := a.maxLinkTTL(r)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	if ttl > max {
		apiBadRequest(w, "invalid", "expiresIn is longer than the allowed maximum of "+max.String()+".")
		return
	}
	key, err := a.currentLinkKey(r)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	exp := a.cfg.Clock().Add(ttl).Unix()
	q := url.Values{"expires": {strconv.FormatInt(exp, 10)}, "key": {key.id},
		"signature": {linkSignature(key, http.MethodGet, n.ID, exp)}}
	path := APIPrefix + "links/" + n.ID + "?" + q.Encode()
	base := a.cfg.BaseURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"url": base + path, "path": path, "expiresAt": time.Unix(exp, 0).UTC(), "expiresIn": int64(ttl / time.Second),
	})
}

// serveLink serves GET and HEAD /api/v1/links/{id} for a signed link. The
// signature is checked in constant time before anything else is read; a
// tampered, expired, foreign-file or rotated-key link, and a link to an
// archived file, all get the same 403.
func (a *api) serveLink(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, keyID := r.PathValue("id"), q.Get("key")
	refuse := func(n *model.Node, why string) {
		if err := a.recordLink(r, keyID, n, false, why); err != nil {
			a.s.writeError(w, r, err)
			return
		}
		writeJSONError(w, http.StatusForbidden, "link_invalid", "The link is invalid or has expired.")
	}
	exp, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	if err != nil || keyID == "" || len(keyID) > 64 || q.Get("signature") == "" {
		refuse(nil, "malformed link")
		return
	}
	key, ok, err := a.linkKeyByID(r, keyID)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	want := linkSignature(key, http.MethodGet, id, exp)
	if !ok || !hmac.Equal([]byte(want), []byte(q.Get("signature"))) {
		refuse(nil, "bad signature or retired key")
		return
	}
	n, err := a.s.repo.NodeByID(r.Context(), id)
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		a.s.writeError(w, r, err)
		return
	}
	switch {
	case a.cfg.Clock().Unix() >= exp:
		refuse(n, "expired link")
		return
	case n == nil || n.Archived() || n.IsDir:
		refuse(n, "file gone or archived")
		return
	}
	if err := a.recordLink(r, keyID, n, true, "signed link"); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	if a.cfg.SignedLinkRedirect && r.Method == http.MethodGet && a.redirectToBlob(w, r, n, time.Unix(exp, 0)) {
		return
	}
	a.serveContent(w, r, n)
}

// presigner is a blob store that hands out time-limited URLs reading one
// blob straight from the backend, as an attachment (s3blob.Store).
type presigner interface {
	PresignGet(ctx context.Context, key, filename string, ttl time.Duration) (string, error)
}

// maxPresignTTL bounds a pre-signed URL: the client follows the redirect
// at once, and a later Range request comes back through the signed link.
const maxPresignTTL = 5 * time.Minute

// redirectToBlob answers with a redirect to a pre-signed URL of n's blob,
// valid until the link expires and at most maxPresignTTL. It reports
// false, having written nothing, when the store cannot presign or fails
// to; the caller then serves the bytes itself. HEAD is never redirected:
// a pre-signed GET does not answer it.
func (a *api) redirectToBlob(w http.ResponseWriter, r *http.Request, n *model.Node, linkExpires time.Time) bool {
	p, ok := a.s.store.Blobs.(presigner)
	if !ok || n.Status != model.StatusCompleted || n.BlobKey == "" {
		return false
	}
	ttl := max(min(linkExpires.Sub(a.cfg.Clock()), maxPresignTTL), time.Second)
	u, err := p.PresignGet(r.Context(), n.BlobKey, n.Name, ttl)
	if err != nil {
		a.s.logger(r.Context()).Warn("presign signed link; serving it directly", "err", err)
		return false
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u, http.StatusFound)
	return true
}

// rotateLinkKey serves POST /api/v1/settings/links/rotate to admins: a new
// signing key, which kills every link signed so far. With a key from
// config there is nothing to rotate here (409).
func (a *api) rotateLinkKey(w http.ResponseWriter, r *http.Request) {
	if !a.allow(w, r, nil, policy.ActAdmin) {
		return
	}
	if len(a.cfg.LinkKey) > 0 {
		writeJSONError(w, http.StatusConflict, "conflict", "The link key comes from the configuration; change it there.")
		return
	}
	k, err := a.s.repo.RotateSigningKey(r.Context())
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keyId": k.ID, "createdAt": k.CreatedAt})
}
