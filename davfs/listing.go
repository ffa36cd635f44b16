package davfs

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"time"

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
// come back as Unix microseconds: formatting them as text costs the
// server more than the rest of the row.
const listingPG = "SELECT n.id, n.name, n.is_dir, n.size, n.mime_type, n.etag, " +
	"CAST(EXTRACT(EPOCH FROM n.mod_time) * 1000000 AS BIGINT), " +
	"CAST(EXTRACT(EPOCH FROM n.created_at) * 1000000 AS BIGINT) FROM nodes AS n " +
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
	var line sql.RawBytes
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
			var mus, cus int64
			if err := rows.Scan(&e.ID, &e.Name, &e.IsDir, &e.Size, &e.MimeType, &e.ETag, &mus, &cus); err != nil {
				return nil, storeErr(err)
			}
			e.ModTime, e.CreatedAt = time.UnixMicro(mus).UTC(), time.UnixMicro(cus).UTC()
			continue
		}
		if err := rows.Scan(&line); err != nil {
			return nil, storeErr(err)
		}
		mt, ct, err := splitListing(line, e)
		if err != nil {
			return nil, err
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

// parseDBTime parses a timestamp as SQLite holds it:
// "2006-01-02 15:04:05[.fraction][Z|±hh[:mm]]" (as Bun writes it, or as
// CURRENT_TIMESTAMP does), with "T" accepted for the space. Anything else
// gives the zero time.
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
