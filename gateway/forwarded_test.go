package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// TestAuditRecordsTheClientBehindATrustedProxy checks whose address an
// audit row names: behind a trusted proxy, the last X-Forwarded-For entry
// (the one the proxy appended) with the proxy's own address after "via";
// without trust, the peer, whatever the header claims.
func TestAuditRecordsTheClientBehindATrustedProxy(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		cases := []struct {
			name  string
			trust bool
			xff   []string
			want  string // prefix of the recorded address
		}{
			{"trusted, one hop", true, []string{"203.0.113.7"}, "203.0.113.7 via 127.0.0.1:"},
			{"trusted, forged entries before the proxy's", true, []string{"6.6.6.6, 203.0.113.8"}, "203.0.113.8 via 127.0.0.1:"},
			{"trusted, two header lines", true, []string{"6.6.6.6", "2001:db8::1"}, "2001:db8::1 via 127.0.0.1:"},
			{"trusted, garbage", true, []string{"not-an-address"}, "127.0.0.1:"},
			{"not trusted", false, []string{"203.0.113.9"}, "127.0.0.1:"},
		}
		for _, c := range cases {
			env := newTestServer(t, db, "", gateway.Config{TrustForwardedHeaders: c.trust}, nil)
			if err := env.srv.MountAPI(gateway.APIConfig{}); err != nil {
				t.Fatal(err)
			}
			root, err := env.repo.LiveByPath(ctx, "/")
			if err != nil {
				t.Fatal(err)
			}
			f, _, err := env.store.Put(ctx, model.PutRequest{Parent: root, Name: "chart-" + model.NewID() + ".txt", Body: strings.NewReader("x")})
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(env.srv.Handler())
			// An anonymous read is refused, and the refusal is audited.
			req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/files/"+f.ID, nil)
			for _, v := range c.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			ts.Close()
			var row model.AuditEntry
			if err := db.NewSelect().Model(&row).Order("seq DESC").Limit(1).Scan(ctx); err != nil {
				t.Fatalf("%s: no audit row: %v", c.name, err)
			}
			if !strings.HasPrefix(row.Remote, c.want) || (c.want == "127.0.0.1:" && strings.Contains(row.Remote, "via")) {
				t.Errorf("%s: audit remote %q, want it to start with %q", c.name, row.Remote, c.want)
			}
		}
	})
}
