// Package soak runs the soak test of issue #8: two real `filegate serve`
// processes on one PostgreSQL database and one blob folder, sixteen
// clients mixing the three doors, and one instance killed and restarted on
// a schedule. Afterwards it checks the bytes, the blob folder against the
// metadata, the audit trail against the requests, the memory of each
// process, and every log line and audit row for the secrets it used.
//
// `go test` runs a short version (about 40 s); FILEGATE_CHAOS=long (`make
// chaos`) runs the long one (10 minutes, a kill every 2 minutes).
package soak

import (
	"os"
	"testing"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/model/dbtest"
)

func TestMain(m *testing.M) {
	code := dbtest.Main(m)
	proctest.Cleanup()
	os.Exit(code)
}
