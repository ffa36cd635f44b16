package main

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/filegate/filegate/model/blob/s3test"
)

// The bare proxy column is only a ceiling if the SDK's signed requests
// pass it unchanged: an object put through it reads back the same, both
// through it and straight from versitygw.
func TestS3ProxyPassesSignedRequests(t *testing.T) {
	srv := s3test.StartT(t)
	ctx := context.Background()
	if err := srv.CreateBucket(ctx, "proxied"); err != nil {
		t.Fatal(err)
	}
	rp, err := newS3Proxy(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(rp)
	defer proxy.Close()
	body := bytes.Repeat([]byte("a 12-lead ECG "), 1<<18) // 3.5 MiB
	via, direct := newSDKClient(proxy.URL, false), newSDKClient(srv.Endpoint, false)
	if _, err := via.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("proxied"), Key: aws.String("ecg.bin"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("PUT through the proxy: %v", err)
	}
	for name, c := range map[string]*s3.Client{"through the proxy": via, "straight": direct} {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("proxied"), Key: aws.String("ecg.bin")})
		if err != nil {
			t.Fatalf("GET %s: %v", name, err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("GET %s: %d bytes, equal %v, %v", name, len(got), bytes.Equal(got, body), err)
		}
	}
	if _, err := newS3Proxy("not a url"); err == nil {
		t.Error("newS3Proxy accepted an upstream without a host")
	}
}
