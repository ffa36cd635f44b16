package davfs_test

import (
	"testing"

	"github.com/filegate/filegate/davfs/davtest"
	"github.com/filegate/filegate/model/dbtest"
)

// TestLitmus runs the litmus conformance suite against the handler on
// PostgreSQL and requires 100% of basic, copymove, props, locks and http.
func TestLitmus(t *testing.T) {
	e := newEnv(t, dbtest.Open(t, dbtest.Postgres))
	a := e.admin("litmus")
	e.folder(e.root, "conformance")
	for _, line := range davtest.Litmus(t, e.url("/conformance/"), a.user, a.pass) {
		t.Log(line)
	}
}
