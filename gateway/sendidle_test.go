package gateway_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestStalledDownloadIsCut checks the other half of the body idle
// timeout: a client that stops reading an answer (a slow-read attack, or a
// phone that went away without closing) loses its connection once nothing
// moved for the timeout, while a slow reader that keeps reading gets every
// byte, and with the timeout disabled nothing is cut.
func TestStalledDownloadIsCut(t *testing.T) {
	const size = 16 << 20
	cases := []struct {
		name     string
		idle     time.Duration
		pause    time.Duration // before the client reads at all
		step     time.Duration // between 256 KiB reads; 0 reads at once
		complete bool
	}{
		{"stalled reader is cut", 2 * time.Second, 6 * time.Second, 0, false},
		{"slow steady reader gets it all", 2 * time.Second, 0, 60 * time.Millisecond, true},
		{"no timeout, stalled reader still gets it all", -1, 6 * time.Second, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newDAVEnv(t, dbtest.Open(t, dbtest.SQLite), gateway.Config{BodyIdleTimeout: c.idle})
			e.user("alice", "alice-password")
			e.apply(policy.Grant(policy.User("alice"), policy.LevelFull, e.root.ID))
			if _, _, err := e.store.Put(context.Background(), model.PutRequest{Parent: e.root, Name: "scan.bin",
				Body: io.LimitReader(zeros{}, size)}); err != nil {
				t.Fatal(err)
			}
			conn, err := net.Dial("tcp", strings.TrimPrefix(e.ts.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.(*net.TCPConn).SetReadBuffer(256 << 10) // keep the kernel from holding the whole file
			auth := base64.StdEncoding.EncodeToString([]byte("alice:alice-password"))
			fmt.Fprintf(conn, "GET /dav/scan.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n", auth)
			time.Sleep(c.pause)
			conn.SetReadDeadline(time.Now().Add(60 * time.Second))
			br := bufio.NewReaderSize(conn, 256<<10)
			var got int64
			buf := make([]byte, 256<<10)
			for {
				n, err := br.Read(buf)
				got += int64(n)
				if err != nil {
					break
				}
				if got >= size { // headers plus the whole body
					break
				}
				time.Sleep(c.step)
			}
			if complete := got >= size; complete != c.complete {
				t.Fatalf("client read %d bytes of a %d-byte file: complete %v, want %v", got, size, complete, c.complete)
			}
		})
	}
}
