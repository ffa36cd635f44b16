// Package faults runs the fault suites of issue #8 against real `filegate
// serve` processes: a PostgreSQL outage under load, a full disk, orphans
// in both directions, SIGTERM with uploads in flight, and clients that
// drop their connection at a random byte. Each suite counts the faults it
// injected and survived and the bytes lost, and logs one parsable line:
//
//	RELIABILITY suite=<name> faults=<n> survived=<n> bytes_lost=<n> ...
//
// `go test` runs short versions; FILEGATE_CHAOS=long (`make chaos`) runs
// longer ones.
package faults

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
