package davfs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/webdav"

	"github.com/filegate/filegate/model"
)

// Property names the Handler computes (live properties).
var (
	pResourceType  = xml.Name{Space: nsDAV, Local: "resourcetype"}
	pCreationDate  = xml.Name{Space: nsDAV, Local: "creationdate"}
	pDisplayName   = xml.Name{Space: nsDAV, Local: "displayname"}
	pContentLength = xml.Name{Space: nsDAV, Local: "getcontentlength"}
	pContentType   = xml.Name{Space: nsDAV, Local: "getcontenttype"}
	pETag          = xml.Name{Space: nsDAV, Local: "getetag"}
	pLastModified  = xml.Name{Space: nsDAV, Local: "getlastmodified"}
	pLockDiscovery = xml.Name{Space: nsDAV, Local: "lockdiscovery"}
	pSupportedLock = xml.Name{Space: nsDAV, Local: "supportedlock"}
	pQuotaAvail    = xml.Name{Space: nsDAV, Local: "quota-available-bytes"}
	pQuotaUsed     = xml.Name{Space: nsDAV, Local: "quota-used-bytes"}
	pWin32Modified = xml.Name{Space: "urn:schemas-microsoft-com:", Local: "Win32LastModifiedTime"}
)

// allLive is the order live properties appear in for allprop and
// propname; the quota properties only appear when named (RFC 4331).
var allLive = []xml.Name{pResourceType, pCreationDate, pDisplayName, pContentLength, pContentType,
	pETag, pLastModified, pLockDiscovery, pSupportedLock}

// isLive reports whether the server computes the property, so PROPPATCH
// may not store it.
func isLive(n xml.Name) bool {
	if n == pQuotaAvail || n == pQuotaUsed {
		return true
	}
	for _, l := range allLive {
		if l == n {
			return true
		}
	}
	return false
}

const supportedLockXML = "<D:supportedlock>" +
	"<D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>" +
	"<D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>" +
	"</D:supportedlock>"

// listing is the state shared by the responses of one PROPFIND.
type listing struct {
	h     *Handler
	q     *request
	m     *msWriter
	req   propfindReq
	locks []Lock
	quota *int64 // available bytes, when known
	// hidden is the lineage of a target the caller sees but may not read
	// (a filtered listing), whose used bytes would tell about others.
	hidden string
}

// propfind answers PROPFIND with Depth 0 or 1 from metadata alone: the
// target, its children (one query), their dead properties (one query) and
// the locks around them (one query), the three run side by side. Depth
// infinity on a folder is refused with propfind-finite-depth.
func (h *Handler) propfind(q *request) {
	depth, err := parseDepth(q.r.Header.Get("Depth"))
	if err != nil {
		http.Error(q.w, "malformed Depth header", http.StatusBadRequest)
		return
	}
	n, err := h.fs.live(q.ctx, q.path)
	if errors.Is(err, model.ErrNotFound) {
		h.missing(q, q.path, http.StatusNotFound)
		return
	}
	if err != nil {
		h.fail(q, err)
		return
	}
	// A caller who may not read a folder but may see it (every signed-in
	// caller sees the root) gets it with only the children it may read:
	// grants are inherited and there are no deny rules, so a readable
	// folder needs no check per child, and the root of a mount still
	// lists the folders each user was given.
	filtered := false
	if !h.allowed(q, actRead, n.Lineage) {
		visible := n.IsDir && !q.actor.Anonymous && (n.ID == model.RootID || h.sees(q, actStat, n.Lineage))
		if !visible {
			h.refuse(q, actRead, q.path, n.Lineage)
			return
		}
		filtered = true
	}
	var hidden string
	if filtered {
		hidden = n.Lineage
	}
	if n.IsDir && (depth == depthInfinity || depth == depthAbsent) {
		writeError(q.w, http.StatusForbidden, "<D:propfind-finite-depth/>")
		return
	}
	req, err := parsePropfind(limitXML(q.r.Body))
	if err != nil {
		h.fail(q, err)
		return
	}
	l := &listing{h: h, q: q, req: req, hidden: hidden}
	wantDead := req.kind != findProp
	wantLocks := req.kind == findAllProp
	for _, name := range req.props {
		switch {
		case name == pLockDiscovery:
			wantLocks = true
		case name == pQuotaAvail && q.actor.Quota.Bytes > 0:
			// What the actor may still store, wherever: their quota
			// less the live files they created. Without a quota the
			// property is left out rather than guessed from the disk.
			if used, err := h.fs.store.Repo.QuotaUsed(q.ctx, q.actor.Quota.Account); err == nil {
				v := max(0, q.actor.Quota.Bytes-used)
				l.quota = &v
			}
		case !isLive(name):
			wantDead = true
		}
	}
	// The reads are independent; running them side by side makes a
	// listing cost the slowest query, not the sum of round trips. A
	// listing the cache may hold reads the folder's change sum instead of
	// its children, and its children only if the cache is behind.
	listChildren := n.IsDir && depth == 1
	cache := h.cfg.Listings
	cacheable := listChildren && !filtered && cache != nil && l.sameForAll()
	var kids [][]entry
	fetched := false // kids holds the children
	var version int64
	var dead map[string][]webdav.Property
	var errs [3]error
	var wg sync.WaitGroup
	switch {
	case cacheable:
		wg.Go(func() { version, errs[0] = h.fs.listingVersion(q.ctx, n.ID) })
	case listChildren:
		fetched = true
		wg.Go(func() { kids, errs[0] = h.fs.children(q.ctx, n.ID) })
	}
	if wantDead {
		wg.Go(func() { dead, errs[1] = h.fs.props.around(q.ctx, n.ID, listChildren) })
	}
	if wantLocks {
		var below []string
		if listChildren {
			below = []string{q.path}
		}
		wg.Go(func() { l.locks, errs[2] = h.fs.locks.Around(q.ctx, []string{q.path}, below) })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		h.fail(q, err)
		return
	}
	hideApple := !isMacClient(q.r)
	// Locks and dead properties are read fresh for every listing; only a
	// folder whose children have none may come from the cache.
	cacheable = cacheable && len(l.locks) == 0 && (len(dead) == 0 || len(dead) == 1 && dead[n.ID] != nil)
	var key string
	var body []byte
	if cacheable {
		key = l.cacheKey(n.ID, hideApple)
		body, _ = cache.get(key, version)
	}
	if listChildren && !fetched && body == nil {
		// Read after the version, so whatever the rows show is at least
		// as new as the stamp they are kept under.
		var err error
		if kids, err = h.fs.children(q.ctx, n.ID); err != nil {
			h.fail(q, err)
			return
		}
	}
	l.m = newMultistatus(q.w)
	self := entryOf(n)
	l.response(q.path, &self, n.Lineage, dead[n.ID])
	switch {
	case body != nil:
		l.m.bw.Write(body)
	case cacheable && cache.fits(estimateListing(kids)):
		body = l.renderKids(n, kids, hideApple, filtered, dead)
		cache.put(key, version, body)
		l.m.bw.Write(body)
	default:
		l.writeKids(n, kids, hideApple, filtered, dead)
	}
	if err := l.m.close(); err != nil && !errors.Is(err, context.Canceled) {
		h.log.Debug("propfind write", "err", err)
	}
}

// writeKids writes the children's responses.
func (l *listing) writeKids(n *model.Node, kids [][]entry, hideApple, filtered bool, dead map[string][]webdav.Property) {
	h, q := l.h, l.q
	for _, block := range kids {
		for i := range block {
			k := &block[i]
			if hideApple && hiddenFromListing(k.Name) {
				continue
			}
			lineage := n.Lineage + "/" + k.ID
			if filtered && !h.sees(q, actRead, lineage) {
				continue
			}
			l.response(model.JoinPath(q.path, k.Name), k, lineage, dead[k.ID])
		}
	}
}

// renderKids renders the children's responses into a buffer of their own,
// for the cache.
func (l *listing) renderKids(n *model.Node, kids [][]entry, hideApple, filtered bool, dead map[string][]webdav.Property) []byte {
	var buf bytes.Buffer
	buf.Grow(int(estimateListing(kids)))
	out := l.m
	l.m = &msWriter{bw: bufio.NewWriterSize(&buf, 64<<10), buf: out.buf}
	l.writeKids(n, kids, hideApple, filtered, dead)
	l.m.bw.Flush()
	out.buf = l.m.buf
	l.m = out
	return buf.Bytes()
}

// estimateListing guesses the rendered size of kids: an allprop response
// is about 750 bytes.
func estimateListing(kids [][]entry) int64 {
	var n int64
	for _, b := range kids {
		n += int64(len(b))
	}
	return n * 800
}

// sameForAll reports whether the children's responses depend only on the
// children's rows: quota properties add sums over other rows.
func (l *listing) sameForAll() bool {
	for _, list := range [2][]xml.Name{l.req.props, l.req.include} {
		for _, name := range list {
			if name == pQuotaAvail || name == pQuotaUsed {
				return false
			}
		}
	}
	return true
}

// cacheKey names one rendering of a folder's children: the folder, the
// path its hrefs start with, what was asked for and whether Apple's
// files are shown.
func (l *listing) cacheKey(folderID string, hideApple bool) string {
	var b strings.Builder
	b.WriteString(folderID)
	b.WriteByte(0)
	b.WriteString(l.q.path)
	b.WriteByte(0)
	b.WriteByte(byte('0' + l.req.kind))
	if hideApple {
		b.WriteByte('h')
	}
	for _, list := range [2][]xml.Name{l.req.props, l.req.include} {
		b.WriteByte(0)
		for _, name := range list {
			b.WriteString(name.Space)
			b.WriteByte(' ')
			b.WriteString(name.Local)
			b.WriteByte(0)
		}
	}
	return b.String()
}

// isMacClient recognises macOS's WebDAV file system, the one client that
// wants to see "._*" and ".DS_Store" files.
func isMacClient(r *http.Request) bool {
	ua := r.Header.Get("User-Agent")
	return strings.Contains(ua, "WebDAVFS") || strings.Contains(ua, "WebDAVLib")
}

// response writes one D:response for the node at p.
func (l *listing) response(p string, e *entry, lineage string, dead []webdav.Property) {
	m := l.m
	m.bw.WriteString("<D:response>")
	m.href(l.h.cfg.Prefix, p, e.IsDir)
	switch l.req.kind {
	case findAllProp:
		m.bw.WriteString("<D:propstat><D:prop>")
		for _, name := range allLive {
			l.live(name, p, e, lineage)
		}
		for _, name := range l.req.include {
			if name == pQuotaAvail || name == pQuotaUsed {
				l.live(name, p, e, lineage)
			}
		}
		for _, d := range dead {
			m.deadProp(d)
		}
		m.bw.WriteString("</D:prop>")
		m.status(http.StatusOK)
		m.bw.WriteString("</D:propstat>")
	case findPropName:
		m.bw.WriteString("<D:propstat><D:prop>")
		for _, name := range allLive {
			if e.IsDir && (name == pContentLength || name == pContentType) {
				continue
			}
			m.emptyProp(name)
		}
		for _, d := range dead {
			m.emptyProp(d.XMLName)
		}
		m.bw.WriteString("</D:prop>")
		m.status(http.StatusOK)
		m.bw.WriteString("</D:propstat>")
	case findProp:
		var missing []xml.Name
		open := false
		for _, name := range l.req.props {
			if !open {
				m.bw.WriteString("<D:propstat><D:prop>")
			}
			open = true
			if isLive(name) {
				if !l.live(name, p, e, lineage) {
					missing = append(missing, name)
				}
				continue
			}
			if d, ok := findDead(dead, name); ok {
				m.deadProp(d)
				continue
			}
			missing = append(missing, name)
		}
		if len(missing) < len(l.req.props) {
			m.bw.WriteString("</D:prop>")
			m.status(http.StatusOK)
			m.bw.WriteString("</D:propstat>")
			open = false
		}
		if len(missing) > 0 {
			if !open {
				m.bw.WriteString("<D:propstat><D:prop>")
			}
			for _, name := range missing {
				m.emptyProp(name)
			}
			m.bw.WriteString("</D:prop>")
			m.status(http.StatusNotFound)
			m.bw.WriteString("</D:propstat>")
		}
	}
	m.bw.WriteString("</D:response>")
}

func findDead(dead []webdav.Property, name xml.Name) (webdav.Property, bool) {
	for _, d := range dead {
		if d.XMLName == name {
			return d, true
		}
	}
	return webdav.Property{}, false
}

// live writes a live property's value; false when the node has no such
// property (a folder's content length, say). A property found missing
// mid-stream is written only when the element has not started, so the
// caller can still list it under 404.
func (l *listing) live(name xml.Name, p string, e *entry, lineage string) bool {
	m := l.m
	bw := m.bw
	switch name {
	case pResourceType:
		if e.IsDir {
			bw.WriteString("<D:resourcetype><D:collection/></D:resourcetype>")
		} else {
			bw.WriteString("<D:resourcetype/>")
		}
	case pCreationDate:
		bw.WriteString("<D:creationdate>")
		m.isoDate(e.CreatedAt)
		bw.WriteString("</D:creationdate>")
	case pDisplayName:
		bw.WriteString("<D:displayname>")
		escapeString(bw, e.Name)
		bw.WriteString("</D:displayname>")
	case pContentLength:
		if e.IsDir {
			return false
		}
		bw.WriteString("<D:getcontentlength>")
		m.int(e.Size)
		bw.WriteString("</D:getcontentlength>")
	case pContentType:
		if e.IsDir {
			return false
		}
		bw.WriteString("<D:getcontenttype>")
		if e.MimeType == "" {
			bw.WriteString("application/octet-stream")
		} else {
			escapeString(bw, e.MimeType)
		}
		bw.WriteString("</D:getcontenttype>")
	case pETag:
		bw.WriteString("<D:getetag>")
		escapeString(bw, e.ETag)
		bw.WriteString("</D:getetag>")
	case pLastModified:
		bw.WriteString("<D:getlastmodified>")
		m.httpDate(e.ModTime)
		bw.WriteString("</D:getlastmodified>")
	case pSupportedLock:
		bw.WriteString(supportedLockXML)
	case pLockDiscovery:
		l.h.writeLockDiscovery(bw, l.locks, p)
	case pQuotaAvail:
		if !e.IsDir || l.quota == nil {
			return false
		}
		bw.WriteString("<D:quota-available-bytes>")
		m.int(*l.quota)
		bw.WriteString("</D:quota-available-bytes>")
	case pQuotaUsed:
		if !e.IsDir || lineage == l.hidden {
			return false
		}
		used, err := l.h.fs.usedBytes(l.q.ctx, lineage)
		if err != nil {
			return false
		}
		bw.WriteString("<D:quota-used-bytes>")
		m.int(used)
		bw.WriteString("</D:quota-used-bytes>")
	default:
		return false
	}
	return true
}

// writeLockDiscovery writes DAV:lockdiscovery with the locks covering p.
func (h *Handler) writeLockDiscovery(w xmlWriter, locks []Lock, p string) {
	w.WriteString("<D:lockdiscovery>")
	for i := range locks {
		if locks[i].covers(p) {
			h.writeActiveLock(w, &locks[i])
		}
	}
	w.WriteString("</D:lockdiscovery>")
}

func (h *Handler) writeActiveLock(w xmlWriter, l *Lock) {
	w.WriteString("<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope>")
	if l.Shared {
		w.WriteString("<D:shared/>")
	} else {
		w.WriteString("<D:exclusive/>")
	}
	w.WriteString("</D:lockscope><D:depth>")
	if l.Infinite {
		w.WriteString("infinity")
	} else {
		w.WriteString("0")
	}
	w.WriteString("</D:depth>")
	if l.OwnerXML != "" {
		w.WriteString("<D:owner>")
		w.WriteString(l.OwnerXML)
		w.WriteString("</D:owner>")
	}
	left := time.Until(l.Expires).Round(time.Second)
	if left < time.Second {
		left = time.Second
	}
	w.WriteString("<D:timeout>Second-")
	w.WriteString(itoa(int64(left / time.Second)))
	w.WriteString("</D:timeout><D:locktoken><D:href>")
	escapeString(w, l.Token)
	w.WriteString("</D:href></D:locktoken><D:lockroot>")
	w.WriteString(hrefElem(h.cfg.Prefix, l.Root, false))
	w.WriteString("</D:lockroot></D:activelock>")
}

// proppatch sets and removes dead properties, all or none (RFC 4918
// section 9.2). getlastmodified and Win32LastModifiedTime also set the
// file's modification time; other live properties are protected (403,
// and 424 for the rest of the request).
func (h *Handler) proppatch(q *request) {
	n := h.target(q, actWrite)
	if n == nil {
		return
	}
	if !h.preconditions(q, change{paths: []string{q.path}}) {
		return
	}
	ops, err := parseProppatch(limitXML(q.r.Body))
	if err != nil {
		h.fail(q, err)
		return
	}
	status := make([]int, len(ops))
	var dead []patchOp
	var mtime *time.Time
	failed := false
	for i, op := range ops {
		status[i] = http.StatusOK
		switch {
		case op.name == pLastModified || op.name == pWin32Modified:
			t, err := http.ParseTime(strings.TrimSpace(string(op.value)))
			if op.remove || err != nil {
				status[i] = http.StatusConflict
				if op.remove {
					status[i] = http.StatusForbidden
				}
				failed = true
				continue
			}
			mtime = &t
			if op.name == pWin32Modified {
				dead = append(dead, op) // Windows reads it back
			}
		case isLive(op.name):
			status[i] = http.StatusForbidden
			failed = true
		case !validName(op.name):
			status[i] = http.StatusForbidden
			failed = true
		default:
			dead = append(dead, op)
		}
	}
	if failed {
		for i := range status {
			if status[i] == http.StatusOK {
				status[i] = http.StatusFailedDependency
			}
		}
	} else {
		if err := h.fs.props.patch(q.ctx, n, dead); err != nil {
			if !errors.Is(err, model.ErrTooLarge) {
				h.fail(q, err)
				return
			}
			for i := range status {
				status[i] = http.StatusInsufficientStorage
			}
		} else if mtime != nil {
			if _, err := h.fs.repo.UpdateMeta(q.ctx, n.ID, model.MetaPatch{ModTime: mtime}); err != nil {
				h.fail(q, err)
				return
			}
		}
	}
	m := newMultistatus(q.w)
	m.bw.WriteString("<D:response>")
	m.href(h.cfg.Prefix, q.path, n.IsDir)
	done := make([]bool, len(ops))
	for i := range ops {
		if done[i] {
			continue
		}
		m.bw.WriteString("<D:propstat><D:prop>")
		for j := i; j < len(ops); j++ {
			if !done[j] && status[j] == status[i] {
				done[j] = true
				m.emptyProp(ops[j].name)
			}
		}
		m.bw.WriteString("</D:prop>")
		m.status(status[i])
		if status[i] == http.StatusForbidden {
			m.bw.WriteString("<D:error><D:cannot-modify-protected-property/></D:error>")
		}
		m.bw.WriteString("</D:propstat>")
	}
	m.bw.WriteString("</D:response>")
	m.close()
}
