package davfs

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/webdav"

	"github.com/filegate/filegate/model"
)

// entry is what a listing needs of a node: a narrow row, so that scanning
// 20,000 children stays cheap.
type entry struct {
	ID        string    `bun:"id"`
	Name      string    `bun:"name"`
	IsDir     bool      `bun:"is_dir"`
	Size      int64     `bun:"size"`
	MimeType  string    `bun:"mime_type"`
	ETag      string    `bun:"etag"`
	ModTime   time.Time `bun:"mod_time"`
	CreatedAt time.Time `bun:"created_at"`
}

func entryOf(n *model.Node) entry {
	return entry{ID: n.ID, Name: n.Name, IsDir: n.IsDir, Size: n.Size, MimeType: n.MimeType, ETag: n.ETag,
		ModTime: n.ModTime, CreatedAt: n.CreatedAt}
}

// listingSQL reads the columns a listing shows, through the covering
// index dav_listing (migration 20261123000400), so neither database
// touches the table rows. Timestamps come back as text and are parsed by
// parseDBTime, which is several times cheaper than the drivers' own.
// listingPG reads the columns a listing shows, which PostgreSQL finds in
// the covering index dav_listing (migration 20261123000400). Timestamps
// come back as text, which parseDBTime reads several times faster than
// the driver would.
const listingPG = "SELECT n.id, n.name, n.is_dir, n.size, n.mime_type, n.etag, " +
	"CAST(n.mod_time AS TEXT), CAST(n.created_at AS TEXT) FROM nodes AS n " +
	"WHERE n.parent_id = ? AND n.archived_at IS NULL AND n.status = 'completed' ORDER BY n.name"

// listingSQLite reads the same as one text column per row, joined by the
// unit separator (a control character no name, type or tag may hold):
// modernc.org/sqlite pays a lock round per column, which made the columns,
// not the rows, the cost of a listing. SQLite's planner would also prefer
// the narrower nodes_children index and read every row from the table, so
// it is told which index to use.
const listingSQLite = "SELECT n.id || char(31) || n.name || char(31) || n.is_dir || char(31) || n.size || char(31) || " +
	"n.mime_type || char(31) || n.etag || char(31) || n.mod_time || char(31) || n.created_at " +
	"FROM nodes AS n INDEXED BY dav_listing " +
	"WHERE n.parent_id = ? AND n.archived_at IS NULL AND n.status = 'completed' ORDER BY n.name"

// children lists a folder's live children with one query. The rows land
// in fixed-size blocks, so a folder of 20,000 never copies a growing
// slice.
func (f *FS) children(ctx context.Context, parentID string) ([][]entry, error) {
	pg := model.IsPostgres(f.db)
	query := listingSQLite
	if pg {
		query = listingPG
	}
	rows, err := f.db.QueryContext(ctx, query, parentID)
	if err != nil {
		return nil, storeErr(err)
	}
	defer rows.Close()
	var blocks [][]entry
	var cur []entry
	var mt, ct, line sql.RawBytes
	for rows.Next() {
		if len(cur) == cap(cur) {
			if len(cur) > 0 {
				blocks = append(blocks, cur)
			}
			cur = make([]entry, 0, 1024)
		}
		cur = cur[:len(cur)+1]
		e := &cur[len(cur)-1]
		if pg {
			if err := rows.Scan(&e.ID, &e.Name, &e.IsDir, &e.Size, &e.MimeType, &e.ETag, &mt, &ct); err != nil {
				return nil, storeErr(err)
			}
		} else {
			if err := rows.Scan(&line); err != nil {
				return nil, storeErr(err)
			}
			if mt, ct, err = splitListing(line, e); err != nil {
				return nil, err
			}
		}
		e.ModTime, e.CreatedAt = parseDBTime(mt), parseDBTime(ct)
	}
	if len(cur) > 0 {
		blocks = append(blocks, cur)
	}
	return blocks, storeErr(rows.Err())
}

// splitListing fills e from a listingSQLite row and returns the two
// timestamps' text.
func splitListing(line []byte, e *entry) (mt, ct []byte, err error) {
	var f [8][]byte
	for i := range 7 {
		j := bytes.IndexByte(line, 0x1f)
		if j < 0 {
			return nil, nil, fmt.Errorf("listing row has %d fields", i+1)
		}
		f[i], line = line[:j], line[j+1:]
	}
	f[7] = line
	s := string(bytes.Join([][]byte{f[0], f[1], f[4], f[5]}, nil)) // one allocation for the four strings
	a, b, c := len(f[0]), len(f[0])+len(f[1]), len(f[0])+len(f[1])+len(f[4])
	e.ID, e.Name, e.MimeType, e.ETag = s[:a], s[a:b], s[b:c], s[c:]
	e.IsDir = len(f[2]) == 1 && f[2][0] == '1'
	for _, d := range f[3] {
		e.Size = e.Size*10 + int64(d-'0')
	}
	return f[6], f[7], nil
}

// parseDBTime parses a timestamp as the databases print it:
// "2006-01-02 15:04:05[.fraction][Z|±hh[:mm]]" (SQLite text as Bun writes
// it, PostgreSQL's ISO output), with "T" accepted for the space. Anything
// else gives the zero time.
func parseDBTime(b []byte) time.Time {
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, len(s) > 0
	}
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || (b[10] != ' ' && b[10] != 'T') || b[13] != ':' || b[16] != ':' {
		return time.Time{}
	}
	y, ok1 := num(b[0:4])
	mo, ok2 := num(b[5:7])
	d, ok3 := num(b[8:10])
	h, ok4 := num(b[11:13])
	mi, ok5 := num(b[14:16])
	s, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}
	}
	rest := b[19:]
	nsec := 0
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		scale := 100000000
		for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
			nsec += int(rest[i]-'0') * scale
			scale /= 10
		}
		rest = rest[i:]
	}
	offset := 0
	switch {
	case len(rest) == 0, len(rest) == 1 && rest[0] == 'Z':
	case rest[0] == '+' || rest[0] == '-':
		oh, ok := num(rest[1:min(3, len(rest))])
		if !ok {
			return time.Time{}
		}
		om := 0
		if len(rest) > 3 {
			tail := rest[3:]
			if tail[0] == ':' {
				tail = tail[1:]
			}
			if om, ok = num(tail); !ok {
				return time.Time{}
			}
		}
		offset = oh*3600 + om*60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}
	}
	return time.Date(y, time.Month(mo), d, h, mi, s, nsec, time.UTC).Add(-time.Duration(offset) * time.Second)
}

// usedBytes sums the sizes of the live files below a folder, for RFC 4331
// quota-used-bytes.
func (f *FS) usedBytes(ctx context.Context, lineage string) (int64, error) {
	var sum int64
	err := f.db.NewSelect().TableExpr("nodes").ColumnExpr("COALESCE(SUM(size), 0)").
		Where("lineage > ? AND lineage < ?", lineage+"/", lineage+"0").
		Where("archived_at IS NULL").Where("is_dir = ?", false).Scan(ctx, &sum)
	return sum, storeErr(err)
}

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
		visible := n.IsDir && !q.actor.Anonymous && (n.ID == model.RootID || h.allowed(q, actStat, n.Lineage))
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
		case name == pQuotaAvail && h.cfg.QuotaAvailable != nil:
			if v, ok := h.cfg.QuotaAvailable(q.ctx, q.actor); ok {
				l.quota = &v
			}
		case !isLive(name):
			wantDead = true
		}
	}
	// The three reads are independent; running them side by side makes a
	// listing cost the slowest query, not the sum of round trips.
	listChildren := n.IsDir && depth == 1
	var kids [][]entry
	var dead map[string][]webdav.Property
	var errs [3]error
	var wg sync.WaitGroup
	if listChildren {
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
	l.m = newMultistatus(q.w)
	self := entryOf(n)
	l.response(q.path, &self, n.Lineage, dead[n.ID])
	for _, block := range kids {
		for i := range block {
			k := &block[i]
			if hideApple && hiddenFromListing(k.Name) {
				continue
			}
			lineage := n.Lineage + "/" + k.ID
			if filtered && !h.allowed(q, actRead, lineage) {
				continue
			}
			l.response(model.JoinPath(q.path, k.Name), k, lineage, dead[k.ID])
		}
	}
	if err := l.m.close(); err != nil && !errors.Is(err, context.Canceled) {
		h.log.Debug("propfind write", "err", err)
	}
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
