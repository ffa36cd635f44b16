package s3test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestSharedServerStoresObjects(t *testing.T) {
	s := Shared(t)
	bucket := s.NewBucket(t)
	ctx := context.Background()
	c := s.Client()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k"),
		Body: strings.NewReader("hello")}); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	if string(b) != "hello" {
		t.Fatalf("read back %q", b)
	}
	if got := s.URL(bucket, "/p/q/"); !strings.HasPrefix(got, "s3://"+bucket+"/p/q?") || !strings.Contains(got, "path_style=true") {
		t.Fatalf("URL = %q", got)
	}
}

func TestStopRestartKeepsBuckets(t *testing.T) {
	s := StartT(t)
	bucket := s.NewBucket(t)
	s.Stop()
	ctx := context.Background()
	if _, err := s.Client().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err == nil {
		t.Fatal("HeadBucket succeeded on a stopped server")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("bucket gone after restart: %v", err)
	}
}
