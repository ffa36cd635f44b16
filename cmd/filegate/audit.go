package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/filegate/filegate/migrations"
	"github.com/filegate/filegate/model"
)

// errTampered is returned when the audit chain does not verify, so the
// command exits non-zero.
var errTampered = errors.New("the audit trail does not verify")

// auditCmd runs `filegate audit verify`: it recomputes the hash chain of
// the audit table from the first row to the head and reports the first
// row that was edited, removed or reordered. It prints the head hash,
// which an operator can keep elsewhere to detect a rewrite of the whole
// tail.
func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("usage: filegate audit verify [--data DIR] [--database-url URL]")
	}
	fs := newFlagSet("audit verify", stderr)
	var sf storeFlags
	sf.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("audit verify takes no arguments, got %q", fs.Args())
	}
	db, err := model.OpenDB(ctx, model.DBOptions{URL: sf.databaseURL, DataDir: sf.data})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := migrations.Up(ctx, db); err != nil {
		return err
	}
	rep, err := model.NewAuditLog(db).Verify(ctx)
	if err != nil {
		return err
	}
	if !rep.OK {
		where := ""
		if rep.BadSeq > 0 {
			where = fmt.Sprintf(" at row %d", rep.BadSeq)
		}
		fmt.Fprintf(stdout, "audit trail TAMPERED%s: %s (%d rows verified before it)\n", where, rep.Problem, rep.Rows)
		return errTampered
	}
	fmt.Fprintf(stdout, "audit trail OK: %d rows, head %d %s\n", rep.Rows, rep.HeadSeq, rep.HeadHash)
	return nil
}
