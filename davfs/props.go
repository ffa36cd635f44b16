package davfs

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/xml"
	"errors"
	"fmt"
	"net"

	"github.com/uptrace/bun"
	"golang.org/x/net/webdav"

	"github.com/filegate/filegate/model"
)

// Limits on dead properties, so PROPPATCH cannot turn the metadata
// database into a blob store.
const (
	maxPropsPerNode  = 256
	maxPropValueSize = 64 << 10
)

// deadProp is a row of dead_props.
type deadProp struct {
	bun.BaseModel `bun:"table:dead_props"`

	NodeID   string `bun:"node_id,pk"`
	ParentID string `bun:"parent_id"`
	NS       string `bun:"ns,pk"`
	Name     string `bun:"name,pk"`
	Lang     string `bun:"lang"`
	Value    string `bun:"value"`
}

func (d *deadProp) property() webdav.Property {
	return webdav.Property{XMLName: xml.Name{Space: d.NS, Local: d.Name}, Lang: d.Lang, InnerXML: []byte(d.Value)}
}

// patchOp is one set or remove of a PROPPATCH, in document order.
type patchOp struct {
	remove bool
	name   xml.Name
	lang   string
	value  []byte // self-contained XML, see canonicalInner
}

// propStore keeps dead properties in the dead_props table.
type propStore struct {
	db *bun.DB
}

// get returns a node's dead properties.
func (s *propStore) get(ctx context.Context, nodeID string) ([]webdav.Property, error) {
	var rows []deadProp
	if err := s.db.NewSelect().Model(&rows).Where("node_id = ?", nodeID).OrderExpr("ns, name").Scan(ctx); err != nil {
		return nil, storeErr(err)
	}
	out := make([]webdav.Property, len(rows))
	for i := range rows {
		out[i] = rows[i].property()
	}
	return out, nil
}

// around returns the dead properties of a node and, with children, of
// its children, by node id, in one query over the two indexes: a listing
// pays for the properties that exist, not for the children it has.
func (s *propStore) around(ctx context.Context, nodeID string, children bool) (map[string][]webdav.Property, error) {
	var rows []deadProp
	q := s.db.NewSelect().Model(&rows).Where("node_id = ?", nodeID)
	if children {
		q = q.WhereOr("parent_id = ?", nodeID)
	}
	if err := q.OrderExpr("node_id, ns, name").Scan(ctx); err != nil {
		return nil, storeErr(err)
	}
	out := map[string][]webdav.Property{}
	for i := range rows {
		out[rows[i].NodeID] = append(out[rows[i].NodeID], rows[i].property())
	}
	return out, nil
}

// patch applies ops in order in one transaction. It returns
// model.ErrTooLarge when a value or the number of properties exceeds the
// limits, and changes nothing then.
func (s *propStore) patch(ctx context.Context, n *model.Node, ops []patchOp) error {
	nodeID := n.ID
	for _, op := range ops {
		if len(op.value) > maxPropValueSize {
			return fmt.Errorf("%w: property value over %d bytes", model.ErrTooLarge, maxPropValueSize)
		}
	}
	return storeErr(s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, op := range ops {
			if op.remove {
				if _, err := tx.NewDelete().Model((*deadProp)(nil)).
					Where("node_id = ? AND ns = ? AND name = ?", nodeID, op.name.Space, op.name.Local).Exec(ctx); err != nil {
					return err
				}
				continue
			}
			// An upsert, not delete-then-insert: two PROPPATCHes of one
			// property at once would both find nothing to delete and the
			// second insert would fail on the key (a 500 on PostgreSQL).
			row := &deadProp{NodeID: nodeID, ParentID: n.ParentID, NS: op.name.Space, Name: op.name.Local, Lang: op.lang, Value: string(op.value)}
			if _, err := tx.NewInsert().Model(row).On("CONFLICT (node_id, ns, name) DO UPDATE").
				Set("parent_id = EXCLUDED.parent_id").Set("lang = EXCLUDED.lang").Set("value = EXCLUDED.value").
				Exec(ctx); err != nil {
				return err
			}
		}
		n, err := tx.NewSelect().Model((*deadProp)(nil)).Where("node_id = ?", nodeID).Count(ctx)
		if err != nil {
			return err
		}
		if n > maxPropsPerNode {
			return fmt.Errorf("%w: more than %d properties", model.ErrTooLarge, maxPropsPerNode)
		}
		return nil
	}))
}

// copyTree copies the dead properties of src's subtree onto the matching
// nodes (by relative path) of dst's subtree, after Store.Copy made them.
func (s *propStore) copyTree(ctx context.Context, repo *model.Repo, src, dst *model.Node) error {
	pairs := map[string]string{src.ID: dst.ID}
	parents := map[string]string{dst.ID: dst.ParentID}
	if src.IsDir && dst.IsDir {
		from, err := repo.Subtree(ctx, src)
		if err != nil {
			return err
		}
		to, err := repo.Subtree(ctx, dst)
		if err != nil {
			return err
		}
		byRel := make(map[string]string, len(to))
		for _, n := range to {
			byRel[n.Path[len(dst.Path):]] = n.ID
		}
		for _, n := range from {
			if id, ok := byRel[n.Path[len(src.Path):]]; ok {
				pairs[n.ID] = id
			}
		}
		for _, n := range to {
			parents[n.ID] = n.ParentID
		}
	}
	ids := make([]string, 0, len(pairs))
	for id := range pairs {
		ids = append(ids, id)
	}
	var rows []deadProp
	for len(ids) > 0 {
		batch := ids[:min(500, len(ids))]
		ids = ids[len(batch):]
		var part []deadProp
		if err := s.db.NewSelect().Model(&part).Where("node_id IN (?)", bun.In(batch)).Scan(ctx); err != nil {
			return storeErr(err)
		}
		rows = append(rows, part...)
	}
	if len(rows) == 0 {
		return nil
	}
	for i := range rows {
		rows[i].NodeID = pairs[rows[i].NodeID]
		rows[i].ParentID = parents[rows[i].NodeID]
	}
	_, err := s.db.NewInsert().Model(&rows).Exec(ctx)
	return storeErr(err)
}

// storeErr reports a lost database connection as model.ErrUnavailable,
// so the client is told to retry (503) rather than shown a 500.
func storeErr(err error) error {
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		return fmt.Errorf("%w: %v", model.ErrUnavailable, err)
	}
	return err
}
