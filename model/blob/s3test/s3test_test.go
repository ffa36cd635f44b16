package s3test

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

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

// A first start whose port was taken between picking and binding moves to
// another port instead of failing.
func TestStartMovesOffATakenPort(t *testing.T) {
	if _, err := Binary(); err != nil {
		skipOrFail(t, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	picks := 0
	pickPort = func() (int, error) {
		picks++
		if picks == 1 {
			return taken, nil
		}
		return freePort()
	}
	t.Cleanup(func() { pickPort = freePort })

	s := StartT(t)
	if s.port == taken || picks < 2 || s.Endpoint != "http://127.0.0.1:"+strconv.Itoa(s.port) {
		t.Fatalf("server at %s after %d picks; port %d was taken", s.Endpoint, picks, taken)
	}
	bucket := s.NewBucket(t)
	if _, err := s.Client().HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
}

// A restart whose port is briefly held by someone else waits for it
// rather than moving, because clients hold the endpoint.
func TestRestartWaitsForItsPort(t *testing.T) {
	s := StartT(t)
	bucket := s.NewBucket(t)
	endpoint := s.Endpoint
	s.Stop()
	l, err := net.Listen("tcp", strings.TrimPrefix(endpoint, "http://"))
	if err != nil {
		t.Fatalf("occupy the stopped server's port: %v", err)
	}
	go func() {
		time.Sleep(time.Second)
		l.Close()
	}()
	start := time.Now()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Endpoint != endpoint {
		t.Fatalf("restarted at %s, want %s", s.Endpoint, endpoint)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("restarted after %v, while its port was taken for a second", d)
	}
	if _, err := s.Client().HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("bucket gone after restart: %v", err)
	}
}

// listensOn tells this process's own listening socket from a port it
// does not listen on.
func TestListensOn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if !listensOn(os.Getpid(), port) {
		t.Fatalf("listensOn(self, %d) = false while listening", port)
	}
	l.Close()
	if listensOn(os.Getpid(), port) {
		t.Fatalf("listensOn(self, %d) = true after closing", port)
	}
}
