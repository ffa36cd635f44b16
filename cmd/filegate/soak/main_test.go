// Package soak runs the soak test of issue #8: two real `filegate serve`
// processes on one PostgreSQL database and one blob folder, sixteen
// clients mixing the three doors, and one instance killed and restarted on
// a schedule. Afterwards it checks the bytes, the blob folder against the
// metadata, the audit trail against the requests, the memory of each
// process, and every log line and audit row for the secrets it used.
//
// TestSoak keeps the blobs in a local folder, TestSoakS3 in an S3 bucket.
// `go test` runs short versions (about 36 s and 18 s of load);
// FILEGATE_CHAOS=long (`make chaos`) runs the long ones (10 minutes with a
// kill every 2 minutes, and 5 minutes with a kill every minute).
package soak

import (
	"os"
	"testing"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/model/blob/s3test"
	"github.com/filegate/filegate/model/dbtest"
)

func TestMain(m *testing.M) {
	code := dbtest.Main(m)
	proctest.Cleanup()
	s3test.Cleanup()
	os.Exit(code)
}
