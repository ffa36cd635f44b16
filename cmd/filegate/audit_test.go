package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// TestAuditVerify appends to the audit trail, runs `filegate audit verify`
// in-process, edits a row behind the application's back and runs it
// again.
func TestAuditVerify(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			url := dbtest.URL(t, kind)
			db, err := model.OpenDB(ctx, model.DBOptions{URL: url})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			verify := func() (string, error) {
				var out, errOut bytes.Buffer
				err := run(ctx, []string{"audit", "verify", "--database-url", url}, nil, &out, &errOut)
				return out.String(), err
			}
			// verify migrates a fresh database and finds an empty chain.
			if out, err := verify(); err != nil || !strings.Contains(out, "OK: 0 rows") {
				t.Fatalf("empty: %q, %v", out, err)
			}
			log := model.NewAuditLog(db)
			for _, sub := range []string{"user:a", "user:b", "token:t1", "anonymous"} {
				if err := log.Append(ctx, model.AuditEntry{Door: "api", Subject: sub, Action: "read", Object: "root/x",
					NodeID: "x", Decision: model.AuditAllow}); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := verify(); err != nil || !strings.Contains(out, "OK: 4 rows, head 4 ") {
				t.Fatalf("intact: %q, %v", out, err)
			}
			drop := []string{"DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"}
			if kind == dbtest.Postgres {
				drop = []string{"DROP TRIGGER audit_no_change ON audit"}
			}
			for _, s := range drop {
				if _, err := db.ExecContext(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.ExecContext(ctx, "UPDATE audit SET subject = 'user:mallory' WHERE seq = 3"); err != nil {
				t.Fatal(err)
			}
			out, err := verify()
			if !errors.Is(err, errTampered) || !strings.Contains(out, "TAMPERED at row 3") {
				t.Fatalf("edited: %q, %v", out, err)
			}
			if err := run(ctx, []string{"audit", "bogus"}, nil, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
				t.Fatal("unknown audit subcommand accepted")
			}
		})
	}
}
