package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/filegate/filegate/gateway/rql"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// fileSchema maps the searchable FileMetadata fields to SQL over nodes n.
var fileSchema = rql.Schema{
	"id":                {Expr: "n.id", Type: rql.String},
	"name":              {Expr: "n.name", Type: rql.String},
	"path":              {Expr: "n.path", Type: rql.String},
	"mimeType":          {Expr: "n.mime_type", Type: rql.String},
	"size":              {Expr: "n.size", Type: rql.Int},
	"sha256":            {Expr: "n.sha256", Type: rql.String},
	"creatorId":         {Expr: "n.creator_id", Type: rql.String},
	"tags":              {Expr: "n.tags", Type: rql.Tags},
	"title":             {Expr: "n.title", Type: rql.Text},
	"description":       {Expr: "n.description", Type: rql.Text},
	"source":            {Expr: "n.source", Type: rql.String},
	"status":            {Expr: "(CASE WHEN n.archived_at IS NOT NULL THEN 'archived' ELSE n.status END)", Type: rql.String},
	"phi":               {Expr: "n.phi", Type: rql.Bool},
	"creationTimestamp": {Expr: "n.created_at", Type: rql.Time},
	"updateTimestamp":   {Expr: "n.updated_at", Type: rql.Time},
}

// sortValue returns a node's value of a sortable field, for cursors.
func sortValue(n *model.Node, field string) any {
	m := toMetadata(n)
	switch field {
	case "id":
		return m.ID
	case "name":
		return m.Name
	case "path":
		return m.Path
	case "mimeType":
		return n.MimeType
	case "size":
		return m.Size
	case "sha256":
		return m.SHA256
	case "creatorId":
		return m.CreatorID
	case "title":
		return m.Title
	case "description":
		return m.Description
	case "source":
		return m.Source
	case "status":
		return m.Status
	case "phi":
		return m.PHI
	case "creationTimestamp":
		return n.CreatedAt
	case "updateTimestamp":
		return n.UpdatedAt
	}
	return nil
}

// rawRQL matches a query string that is RQL itself (?eq(tags,x)&limit(5)),
// the form RQL clients send, rather than rql=... parameters.
var rawRQL = regexp.MustCompile(`^[a-zA-Z]+\(`)

// listQuery is a list or search request, parsed.
type listQuery struct {
	rql      *rql.Query
	src      string // what the cursor is bound to
	cursor   string
	limit    int
	parentID string
}

func (a *api) parseListQuery(r *http.Request) (*listQuery, error) {
	lq := &listQuery{}
	var text string
	if raw := r.URL.RawQuery; rawRQL.MatchString(raw) {
		// The whole query string is RQL with percent-encoded values; only
		// a cursor=... term is ours.
		var terms []string
		for _, t := range strings.Split(raw, "&") {
			if c, ok := strings.CutPrefix(t, "cursor="); ok {
				lq.cursor = c
				continue
			}
			terms = append(terms, t)
		}
		text = strings.Join(terms, "&")
	} else {
		q := r.URL.Query()
		text = q.Get("rql")
		lq.cursor, lq.parentID = q.Get("cursor"), q.Get("parentId")
		var extra []string
		if name := q.Get("name"); name != "" {
			extra = append(extra, "eq(name,"+escapeRQL(name)+")")
		}
		if s := q.Get("sort"); s != "" {
			if strings.EqualFold(q.Get("order"), "desc") && !strings.HasPrefix(s, "-") {
				s = "-" + strings.TrimPrefix(s, "+")
			}
			extra = append(extra, "sort("+escapeRQL(s)+")")
		}
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%w: limit must be a positive integer", model.ErrInvalid)
			}
			lq.limit = n
		}
		for _, e := range extra {
			if text != "" {
				text += "&"
			}
			text += e
		}
	}
	parsed, err := rql.Parse(text)
	if err != nil {
		return nil, err
	}
	if err := rql.CheckSelect(parsed, fileSchema); err != nil {
		return nil, err
	}
	if parsed.Limit >= 0 {
		lq.limit = parsed.Limit
	}
	lq.rql, lq.src = parsed, text+"\x00"+lq.parentID
	return lq, nil
}

// escapeRQL percent-encodes the characters RQL uses as syntax.
func escapeRQL(s string) string {
	return strings.NewReplacer("%", "%25", ",", "%2C", "(", "%28", ")", "%29", "&", "%26", "|", "%7C", "=", "%3D").Replace(s)
}

// cursor is the opaque continuation of a page: the query it belongs to,
// the sort, and the last row's sort values and id.
type cursor struct {
	Query string            `json:"q"`
	After []json.RawMessage `json:"a"`
}

func queryDigest(src string) string {
	sum := sha256.Sum256([]byte(src))
	return base64.RawURLEncoding.EncodeToString(sum[:9])
}

func encodeCursor(src string, order []rql.Order, last *model.Node) string {
	c := cursor{Query: queryDigest(src)}
	for _, o := range order {
		b, _ := json.Marshal(sortValue(last, o.Field))
		c.After = append(c.After, b)
	}
	b, _ := json.Marshal(last.ID)
	c.After = append(c.After, b)
	out, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(out)
}

// decodeCursor checks a cursor against the query and returns the keyset
// values typed as the sort fields compare. It returns model.ErrInvalid.
func decodeCursor(s, src string, order []rql.Order) ([]any, error) {
	bad := fmt.Errorf("%w: the cursor is malformed or belongs to another query", model.ErrInvalid)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	var c cursor
	if err := json.Unmarshal(raw, &c); err != nil || c.Query != queryDigest(src) || len(c.After) != len(order)+1 {
		return nil, bad
	}
	out := make([]any, 0, len(c.After))
	for i, v := range c.After {
		t := rql.String
		if i < len(order) {
			t = fileSchema[order[i].Field].Type
		}
		var x any
		var err error
		switch t {
		case rql.Int:
			var n int64
			err = json.Unmarshal(v, &n)
			x = n
		case rql.Bool:
			var b bool
			err = json.Unmarshal(v, &b)
			x = b
		case rql.Time:
			var tm time.Time
			err = json.Unmarshal(v, &tm)
			x = tm.UTC()
		default:
			var str string
			err = json.Unmarshal(v, &str)
			x = str
		}
		if err != nil {
			return nil, bad
		}
		out = append(out, x)
	}
	return out, nil
}

// scope is what a caller may see in listings: everything, or the subtrees
// of these lineages.
type scope struct {
	all    bool
	within []string
	rule   string
}

// visibleScope works out the caller's listing scope: admins, view_files
// holders and whoever may stat the root see everything; others see the
// subtrees of the nodes where they (through their groups, or anyone) hold
// a grant or a direct rule that lets them stat the node.
func (a *api) visibleScope(ctx context.Context, sub string) (scope, error) {
	if d := a.pol.Decide(ctx, sub, policy.ActViewFiles, policy.AnyObject); d.Allowed {
		return scope{all: true, rule: ruleText(d)}, nil
	}
	if d := a.pol.Decide(ctx, sub, policy.ActStat, model.RootID); d.Allowed {
		return scope{all: true, rule: ruleText(d)}, nil
	}
	members := []string{sub, policy.Anyone}
	seen := map[string]bool{sub: true, policy.Anyone: true}
	frontier := []string{sub}
	for depth := 0; depth < 10 && len(frontier) > 0; depth++ {
		var next []string
		for _, s := range frontier {
			lines, err := a.pol.Rules(ctx, policy.Filter{Ptype: "g", Values: []string{s}})
			if err != nil {
				return scope{}, err
			}
			for _, l := range lines {
				if !seen[l[2]] {
					seen[l[2]] = true
					members = append(members, l[2])
					next = append(next, l[2])
				}
			}
		}
		frontier = next
	}
	ids := map[string]bool{}
	for _, m := range members {
		for _, f := range []policy.Filter{{Ptype: "g2", Values: []string{m}}, {Ptype: "p", Values: []string{m}}} {
			lines, err := a.pol.Rules(ctx, f)
			if err != nil {
				return scope{}, err
			}
			for _, l := range lines {
				node := l[3]
				if l[0] == "p" {
					node = l[2]
				}
				if node != policy.AnyObject {
					ids[node] = true
				}
			}
		}
	}
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	lineages, err := a.s.repo.LineagesOf(ctx, list)
	if err != nil {
		return scope{}, err
	}
	sc := scope{within: []string{}, rule: "listing limited to granted subtrees"}
	for _, l := range lineages {
		if a.pol.Decide(ctx, sub, policy.ActStat, l).Allowed {
			sc.within = append(sc.within, l)
		}
	}
	return sc, nil
}

// search runs a list query for the request's principal and returns one
// page and the cursor of the next, if any.
func (a *api) search(r *http.Request, lq *listQuery, forceLimit int) ([]*model.Node, string, error) {
	ctx := r.Context()
	sub := PrincipalFrom(ctx).Subject
	sc, err := a.visibleScope(ctx, sub)
	if err != nil {
		return nil, "", err
	}
	if err := a.recordListing(r, sub, sc); err != nil {
		return nil, "", err
	}
	c, err := rql.Compile(lq.rql, fileSchema, rql.Dialect{Postgres: model.IsPostgres(a.s.repo.DB()), Trigram: a.trigram(ctx)})
	if err != nil {
		return nil, "", err
	}
	order := c.Order
	if len(order) == 0 {
		order = []rql.Order{{Field: "name", Expr: fileSchema["name"].Expr}}
	}
	limit := lq.limit
	if limit <= 0 {
		limit = 50
	}
	if forceLimit > 0 {
		limit = forceLimit
	}
	if limit > a.cfg.MaxPageSize {
		return nil, "", fmt.Errorf("%w: limit is above the maximum page size of %d", model.ErrInvalid, a.cfg.MaxPageSize)
	}
	s := model.Search{Where: c.Where, Args: c.Args, Archived: c.Uses["status"], Folders: lq.parentID != "",
		ParentID: lq.parentID, Limit: limit + 1, Offset: lq.rql.Offset}
	if !sc.all {
		s.Within = sc.within
	}
	for _, o := range order {
		s.Order = append(s.Order, model.SearchOrder{Expr: o.Expr, Desc: o.Desc})
	}
	if lq.cursor != "" {
		if s.After, err = decodeCursor(lq.cursor, lq.src, order); err != nil {
			return nil, "", err
		}
		s.Offset = 0
	}
	nodes, err := a.s.repo.SearchNodes(ctx, s)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(nodes) > limit {
		nodes = nodes[:limit]
		next = encodeCursor(lq.src, order, nodes[len(nodes)-1])
	}
	// The scope is exact; checking each row again costs memory lookups
	// only and keeps a listing from ever showing what stat would refuse.
	kept := nodes[:0]
	for _, n := range nodes {
		if sc.all || a.may(r, policy.ActStat, n) {
			kept = append(kept, n)
		}
	}
	return kept, next, nil
}

// recordListing audits a listing or search as one decision: allowed, with
// the scope the caller got.
func (a *api) recordListing(r *http.Request, sub string, sc scope) error {
	e := model.AuditEntry{Door: "api", Subject: sub, Action: policy.ActStat, Object: policy.AnyObject,
		Decision: model.AuditAllow, Rule: "search: " + sc.rule, Remote: r.RemoteAddr, RequestID: RequestID(r.Context())}
	if err := a.audit.Append(r.Context(), e); err != nil {
		a.s.logger(r.Context()).Error("audit append failed; refusing the request", "err", err)
		return fmt.Errorf("%w: audit trail: %v", model.ErrUnavailable, err)
	}
	return nil
}

// trigram reports, once per API, whether pg_trgm is installed.
func (a *api) trigram(ctx context.Context) bool {
	a.trgmOnce.Do(func() { a.trgm = a.s.repo.HasTrigram(ctx) })
	return a.trgm
}

// writeListError answers RQL syntax errors with 400 and their position.
func (a *api) writeListError(w http.ResponseWriter, r *http.Request, err error) {
	var se *rql.SyntaxError
	if errors.As(err, &se) {
		writeJSONError(w, http.StatusBadRequest, "invalid_rql", "Malformed query: "+se.Error()+".")
		return
	}
	a.s.writeError(w, r, err)
}

// listFiles serves GET /api/v1/files: the files the caller may see,
// filtered by RQL (rql=... or the whole query string), name (findByName)
// or parentId (a folder's children, folders included), sorted by sort and
// order or RQL sort(), paged with limit and the opaque cursor of the
// previous answer's next.
func (a *api) listFiles(w http.ResponseWriter, r *http.Request) {
	lq, err := a.parseListQuery(r)
	if err != nil {
		a.writeListError(w, r, err)
		return
	}
	nodes, next, err := a.search(r, lq, 0)
	if err != nil {
		a.writeListError(w, r, err)
		return
	}
	data := make([]any, 0, len(nodes))
	for _, n := range nodes {
		data = append(data, project(toMetadata(n), lq.rql.Select))
	}
	out := map[string]any{"data": data, "next": nil}
	if next != "" {
		out["next"] = next
	}
	writeJSON(w, http.StatusOK, out)
}

// findFirst serves GET /api/v1/files/first: the first match of a list
// query (RQL findFirst), with its tokens for callers with full access.
func (a *api) findFirst(w http.ResponseWriter, r *http.Request) {
	lq, err := a.parseListQuery(r)
	if err != nil {
		a.writeListError(w, r, err)
		return
	}
	nodes, _, err := a.search(r, lq, 1)
	if err != nil {
		a.writeListError(w, r, err)
		return
	}
	if len(nodes) == 0 {
		a.s.writeError(w, r, model.ErrNotFound)
		return
	}
	a.writeMetadata(w, r, http.StatusOK, nodes[0])
}

// project keeps only the selected fields of m; no selection keeps all.
func project(m fileMetadata, fields []string) any {
	if len(fields) == 0 {
		return m
	}
	b, _ := json.Marshal(m)
	var all map[string]json.RawMessage
	json.Unmarshal(b, &all)
	out := make(map[string]json.RawMessage, len(fields))
	for _, f := range fields {
		if v, ok := all[f]; ok {
			out[f] = v
		}
	}
	return out
}
