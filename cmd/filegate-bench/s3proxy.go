package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// targetSDKProxied is raw-sdk's work sent through a bare reverse proxy in
// a process of its own: every byte crosses the same second loopback hop as
// through filegate, and nothing else is done to it. It is the ceiling of
// any gateway between a client and S3 on this machine, which the raw
// columns are not.
const targetSDKProxied = "raw-sdk-via-proxy"

// proxyCopyBuf matches the 4 MiB reads and writes s3blob copies S3 bodies
// with, so the column differs from filegate only in what filegate does
// besides copying.
const proxyCopyBuf = 4 << 20

// startSDKProxied starts the bare proxy in front of the run's versitygw
// and points a default SDK client at it, on a fresh bucket.
func (h *harness) startSDKProxied(ctx context.Context, dir, tag string) (*running, error) {
	bucket, err := h.s3.newBucket(ctx, tag)
	if err != nil {
		return nil, err
	}
	r, err := h.serve(ctx, launch{spec: h.spec(targetSDKProxied), dir: dir, tag: tag, bin: h.self,
		readyPath: "/", // versitygw's answer to an unsigned request, through the proxy
		args: func(addr string) []string {
			return []string{"serve-s3-proxy", "-listen", addr, "-upstream", h.s3.srv.Endpoint}
		}})
	if err != nil {
		return nil, err
	}
	r.sdk = &sdkTarget{bucket: bucket, c: newSDKClient(r.ep.base, false)}
	return r, nil
}

// serveS3Proxy runs the bare proxy (newS3Proxy) on -listen.
func serveS3Proxy(args []string) error {
	fs := flag.NewFlagSet("serve-s3-proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := fs.String("upstream", "", "the S3 server's base URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rp, err := newS3Proxy(*upstream)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: *listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("S3 proxy on %s for %s", *listen, *upstream)
	if err := srv.ListenAndServe(); err != nil {
		return fmt.Errorf("S3 proxy: %w", err)
	}
	return nil
}

// newS3Proxy is the bare proxy's handler: httputil.ReverseProxy to
// upstream with 4 MiB copy buffers, keeping the client's Host header,
// which SigV4 signs.
func newS3Proxy(upstream string) (*httputil.ReverseProxy, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return nil, errors.New("serve-s3-proxy: -upstream needs a URL like http://127.0.0.1:PORT")
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		BufferPool: &copyBufPool{pool: sync.Pool{New: func() any { return make([]byte, proxyCopyBuf) }}},
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true,
			ReadBufferSize: 256 << 10, WriteBufferSize: 256 << 10},
	}, nil
}

// copyBufPool is httputil.BufferPool over a sync.Pool. Putting a slice
// allocates its header, once per proxied request, which is nothing next
// to the 4 MiB it saves.
type copyBufPool struct{ pool sync.Pool }

func (p *copyBufPool) Get() []byte  { return p.pool.Get().([]byte) }
func (p *copyBufPool) Put(b []byte) { p.pool.Put(b) }
