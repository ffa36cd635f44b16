package policy

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/policy/bunadapter"
)

// ExportCSV writes every stored rule to w in Casbin's policy file format,
// one "ptype, v0, v1, ..." line each, in the order they were added. It
// streams from the database and returns the database's or w's error.
func (a *Authorizer) ExportCSV(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriter(w)
	err := bunadapter.Each(ctx, a.db, Filter{}, func(line []string) error {
		for i, v := range line {
			if i > 0 {
				bw.WriteString(", ")
			}
			bw.WriteString(csvField(v))
		}
		return bw.WriteByte('\n')
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// csvField quotes a value only when a CSV reader would otherwise misread
// it; valid rules never need quotes, rows written around the package may.
func csvField(v string) string {
	if v == "" || strings.ContainsAny(v, ",\"\r\n#") || strings.TrimSpace(v) != v {
		return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
	}
	return v
}

// importChunk lines are written per statement while importing.
const importChunk = 1000

// ImportCSV reads rules in Casbin's policy file format ("p, a, b, c" per
// line; blank lines and lines starting with # are skipped) and stores them
// in one transaction as one change. With replace, every stored rule is
// removed first (the built-in rules are put back). The file is streamed,
// never held whole. It returns how many lines it read, ErrInvalid naming
// the line when any line does not fit the model (nothing is stored then),
// and the database's or r's error.
func (a *Authorizer) ImportCSV(ctx context.Context, r io.Reader, replace bool) (int, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1
	n := 0
	err := a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		rev, err := bumpRevision(ctx, tx)
		if err != nil {
			return err
		}
		if replace {
			if err := bunadapter.DeleteAll(ctx, tx); err != nil {
				return err
			}
		}
		batch := Builtin()
		flush := func() error {
			_, err := bunadapter.Insert(ctx, tx, batch)
			batch = batch[:0]
			return err
		}
		for {
			rec, err := cr.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				var pe *csv.ParseError
				if errors.As(err, &pe) {
					return fmt.Errorf("%w: %v", ErrInvalid, err)
				}
				return fmt.Errorf("read policy CSV: %w", err)
			}
			line, _ := cr.FieldPos(0)
			for i := range rec {
				rec[i] = strings.TrimSpace(rec[i])
			}
			if err := Validate(rec); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
			n++
			if batch = append(batch, rec); len(batch) >= importChunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		// Readers reload everything rather than replay a whole file.
		return writeLog(ctx, tx, rev, nil, nil, true)
	})
	if err != nil {
		return 0, err
	}
	return n, a.Reload(ctx)
}
