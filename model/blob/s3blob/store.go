package s3blob

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/filegate/filegate/model/blob"
)

// MaxKeyLen is the longest key (and upload id) the store accepts, the
// same as localblob's, so that keys move between stores and stay one file
// name on file-backed S3 servers.
const MaxKeyLen = blob.MaxKeyLen

// S3 limits.
const (
	minPart       = 5 << 20  // smallest part but the last
	maxParts      = 10000    // parts per multipart upload
	maxCopyObject = 5 << 30  // largest CopyObject source
	copyPartSize  = 1 << 30  // part size of a multipart server-side copy
	partTier      = 1000     // parts per part-size step
	metaSHA256    = "sha256" // x-amz-meta-sha256, and the tag key
	defaultRegion = "us-east-1"
)

// Config says where the store lives and how hard it tries.
type Config struct {
	// Bucket must exist already.
	Bucket string
	// Prefix is prepended to every object name, without a trailing "/";
	// several stores can share a bucket under different prefixes.
	Prefix string
	// Endpoint is the base URL of an S3-compatible server, such as
	// http://127.0.0.1:7070; empty means AWS.
	Endpoint string
	// Region defaults to AWS_REGION, the shared config, then us-east-1.
	Region string
	// PathStyle addresses buckets as endpoint/bucket rather than
	// bucket.endpoint, as most self-hosted servers need.
	PathStyle bool
	// SSE asks S3 to encrypt every object the store writes: "AES256"
	// (keys managed by S3) or "aws:kms" (a KMS key, SSEKMSKeyID or the
	// account's default); empty leaves it to the bucket's default.
	SSE string
	// SSEKMSKeyID is the KMS key of SSE "aws:kms"; empty means the
	// account's default key.
	SSEKMSKeyID string

	// PartialKey, when set, names the key Publish is expected to be
	// given for a resumable upload id (tus publishes upload id under a
	// key derived from it). The upload's parts are then assembled in
	// place under that key, and Publish(id, PartialKey(id)) costs no
	// server-side copy. The key must be used for nothing else; Publish
	// under another key still works, with a copy. The blob URL cannot
	// set it.
	PartialKey func(id string) string

	// PartSize is the size of multipart parts and of a writer's buffers;
	// 0 means 8 MiB, and less than 5 MiB is raised to 5 MiB.
	PartSize int64
	// Concurrency is how many parts one writer uploads at a time; 0
	// means 2.
	Concurrency int
	// MaxAttempts is how often one request is tried; 0 means 5. With the
	// default backoff an unreachable server is reported (as
	// blob.ErrUnavailable, which clients see as 503 with Retry-After) after
	// at most about 4s of waiting per operation.
	MaxAttempts int
	// MaxBackoff caps the jittered wait between attempts; 0 means 1s.
	MaxBackoff time.Duration
	// DialTimeout bounds connecting; 0 means 5s.
	DialTimeout time.Duration
	// ReadTimeout bounds each wait for response bytes; 0 means 2 min.
	ReadTimeout time.Duration
}

// ParseURL reads a blob URL of the form
// s3://bucket/prefix?endpoint=http://host:port&region=r&path_style=true.
// The prefix, endpoint, region and path_style are optional. It returns an
// error for another scheme, a missing bucket, an unknown parameter or a
// malformed value.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("s3blob: blob URL: %w", err)
	}
	if u.Scheme != "s3" {
		return Config{}, fmt.Errorf("s3blob: blob URL %q: scheme must be s3", raw)
	}
	if u.User != nil {
		return Config{}, errors.New("s3blob: blob URL must not hold credentials; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	cfg := Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}
	if cfg.Bucket == "" {
		return Config{}, fmt.Errorf("s3blob: blob URL %q names no bucket", raw)
	}
	for name, vals := range u.Query() {
		v := vals[len(vals)-1]
		switch name {
		case "endpoint":
			e, err := url.Parse(v)
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
				return Config{}, fmt.Errorf("s3blob: blob URL: endpoint %q is not an http(s) URL", v)
			}
			cfg.Endpoint = v
		case "region":
			cfg.Region = v
		case "path_style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("s3blob: blob URL: path_style %q is not a boolean", v)
			}
			cfg.PathStyle = b
		case "sse":
			if v != string(types.ServerSideEncryptionAes256) && v != string(types.ServerSideEncryptionAwsKms) {
				return Config{}, fmt.Errorf("s3blob: blob URL: sse %q is neither AES256 nor aws:kms", v)
			}
			cfg.SSE = v
		case "sse_kms_key_id":
			cfg.SSEKMSKeyID = v
		default:
			return Config{}, fmt.Errorf("s3blob: blob URL: unknown parameter %q", name)
		}
	}
	if cfg.SSEKMSKeyID != "" && cfg.SSE != string(types.ServerSideEncryptionAwsKms) {
		return Config{}, errors.New("s3blob: blob URL: sse_kms_key_id needs sse=aws:kms")
	}
	return cfg, nil
}

// Store is a blob.Store in an S3 bucket. It is safe for concurrent use,
// and several processes may share one bucket and prefix.
type Store struct {
	c      *s3.Client
	bucket string
	base   string // prefix + "/", or ""

	partSize    int64
	concurrency int
	copyLimit   int64 // largest source copied with one CopyObject
	copyPart    int64 // part size of a multipart copy
	partialKey  func(id string) string
	sse         types.ServerSideEncryption // "" for the bucket's default
	kmsKey      *string
	bufs        sync.Pool // part buffers of PartSize
	copyBufs    sync.Pool // copyBufSize buffers of readers' WriteTo and rehash

	mu       sync.Mutex
	live     map[string]struct{} // multipart upload ids of this process in flight
	partials map[string]*partialLock
}

var (
	_ blob.Store       = (*Store)(nil)
	_ blob.SizedOpener = (*Store)(nil)
)

// New connects to the bucket and checks that it is reachable. It returns
// an error for a bad configuration, blob.ErrUnavailable when the server
// cannot be reached, and the server's error when the bucket is missing or
// the credentials are refused.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3blob: no bucket")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 8 << 20
	}
	cfg.PartSize = max(cfg.PartSize, minPart)
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 2
	}
	awsCfg, err := loadAWSConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		// Our bytes carry their own SHA-256 and the SDK's CRC32 checksum;
		// signing each body with a second SHA-256 pass would only cost
		// CPU, on TLS and plain http alike.
		o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		// Parts are in memory already; waiting for 100-continue is a
		// round trip per part for nothing.
		o.ContinueHeaderThresholdBytes = -1
		// We send CRC32 checksums we computed from the buffers ourselves
		// (crc32Of): left to the SDK, an unsigned body's checksum goes
		// in an aws-chunked trailer, which servers decode slowly.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		// Multipart objects have per-part checksums only; saying so on
		// every GET is noise.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	s := &Store{
		c:           client,
		bucket:      cfg.Bucket,
		partSize:    cfg.PartSize,
		concurrency: cfg.Concurrency,
		copyLimit:   maxCopyObject,
		copyPart:    copyPartSize,
		partialKey:  cfg.PartialKey,
		sse:         types.ServerSideEncryption(cfg.SSE),
		live:        make(map[string]struct{}),
		partials:    make(map[string]*partialLock),
	}
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		s.base = p + "/"
	}
	if cfg.SSEKMSKeyID != "" {
		s.kmsKey = aws.String(cfg.SSEKMSKeyID)
	}
	s.bufs.New = func() any { b := make([]byte, s.partSize); return &b }
	s.copyBufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := client.HeadBucket(hctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)}); err != nil {
		return nil, fmt.Errorf("s3blob: bucket %q: %w", cfg.Bucket, mapErr(err))
	}
	return s, nil
}

// loadAWSConfig builds the SDK configuration: the standard credential and
// region sources, our HTTP client and retryer. AWS_CA_BUNDLE only matters
// for https; when it names an unusable file and the endpoint is plain
// http, the credentials are taken from the environment alone instead of
// failing.
func loadAWSConfig(ctx context.Context, cfg Config) (aws.Config, error) {
	attempts := cfg.MaxAttempts
	if attempts <= 0 {
		attempts = 5
	}
	backoff := cfg.MaxBackoff
	if backoff <= 0 {
		backoff = time.Second
	}
	dial := cfg.DialTimeout
	if dial <= 0 {
		dial = 5 * time.Second
	}
	readTimeout := cfg.ReadTimeout
	if readTimeout <= 0 {
		readTimeout = 2 * time.Minute
	}
	httpClient := awshttp.NewBuildableClient().
		WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConns = 256
			tr.MaxIdleConnsPerHost = 64
			tr.WriteBufferSize = 256 << 10
			tr.ReadBufferSize = 256 << 10
		}).
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = dial }).
		WithReadTimeout(readTimeout)
	retryer := func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.MaxBackoff = backoff
			// The token bucket would turn a long outage into "quota
			// exceeded" errors that never retry; the attempt cap is enough.
			o.RateLimiter = ratelimit.None
		})
	}
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(retryer),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		if !strings.HasPrefix(cfg.Endpoint, "http://") {
			return aws.Config{}, fmt.Errorf("s3blob: AWS configuration: %w", err)
		}
		env, eerr := config.NewEnvConfig()
		if eerr != nil || !env.Credentials.HasKeys() {
			return aws.Config{}, fmt.Errorf("s3blob: AWS configuration: %w", err)
		}
		slog.Warn("s3blob: AWS configuration unusable, using credentials from the environment for the http endpoint", "err", err)
		awsCfg = aws.Config{
			Region:      env.Region,
			Credentials: aws.NewCredentialsCache(staticCreds(env.Credentials)),
			HTTPClient:  httpClient,
			Retryer:     retryer,
		}
		if cfg.Region != "" {
			awsCfg.Region = cfg.Region
		}
	}
	if awsCfg.Region == "" {
		awsCfg.Region = defaultRegion
	}
	return awsCfg, nil
}

type staticCreds aws.Credentials

func (c staticCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials(c), nil
}

// Client returns the SDK client the store uses, for callers that need an
// operation the store does not offer (such as creating the bucket).
func (s *Store) Client() *s3.Client { return s.c }

// Bucket returns the bucket the store lives in.
func (s *Store) Bucket() string { return s.bucket }

// encrypted is in after encrypt, for a request built in the call.
func encrypted[T *s3.PutObjectInput | *s3.CreateMultipartUploadInput | *s3.CopyObjectInput](s *Store, in T) T {
	s.encrypt(in)
	return in
}

// encrypt asks S3 to encrypt the object a request creates, as the store
// was configured to: every PutObject, CreateMultipartUpload and
// CopyObject goes through it (a copy left alone would take the bucket's
// default instead of the source's encryption). Part uploads inherit
// their upload's.
func (s *Store) encrypt(in any) {
	if s.sse == "" {
		return
	}
	switch v := in.(type) {
	case *s3.PutObjectInput:
		v.ServerSideEncryption, v.SSEKMSKeyId = s.sse, s.kmsKey
	case *s3.CreateMultipartUploadInput:
		v.ServerSideEncryption, v.SSEKMSKeyId = s.sse, s.kmsKey
	case *s3.CopyObjectInput:
		v.ServerSideEncryption, v.SSEKMSKeyId = s.sse, s.kmsKey
	default:
		panic(fmt.Sprintf("s3blob: encrypt of %T", in))
	}
}

// checkKey is the key syntax every blob store shares.
func checkKey(key string) error { return blob.CheckKey(key) }

// name turns a valid key into one path segment; keyOf reverses it.
func name(key string) string   { return strings.ReplaceAll(key, "/", "+") }
func keyOf(name string) string { return strings.ReplaceAll(name, "+", "/") }

func (s *Store) objectsPrefix() string        { return s.base + "objects/" }
func (s *Store) objectName(key string) string { return s.objectsPrefix() + name(key) }

// copySource is the URL-encoded bucket/object of a CopyObject source.
func (s *Store) copySource(object string) string {
	segs := strings.Split(object, "/")
	for i, seg := range segs {
		segs[i] = url.QueryEscape(seg) // our names hold no spaces; "+" becomes %2B
	}
	return url.PathEscape(s.bucket) + "/" + strings.Join(segs, "/")
}

// partSizeOf is the size of part n (from 1) of a writer: one step up every
// partTier parts keeps 10,000 parts enough for about 440 GiB.
func (s *Store) partSizeOf(n int32) int64 {
	return s.partSize * int64(1+(n-1)/partTier)
}

func (s *Store) getBuf(size int64) *[]byte {
	if size == s.partSize {
		return s.bufs.Get().(*[]byte)
	}
	b := make([]byte, size)
	return &b
}

func (s *Store) putBuf(b *[]byte) {
	if b != nil && int64(len(*b)) == s.partSize {
		s.bufs.Put(b)
	}
}

func (s *Store) addLive(uploadID string) {
	s.mu.Lock()
	s.live[uploadID] = struct{}{}
	s.mu.Unlock()
}

func (s *Store) dropLive(uploadID string) {
	s.mu.Lock()
	delete(s.live, uploadID)
	s.mu.Unlock()
}

func (s *Store) isLive(uploadID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.live[uploadID]
	return ok
}

// Create starts a new blob; nothing is sent until the first part fills or
// Commit is called. The returned Writer is not safe for concurrent use;
// ctx bounds its writes and part uploads. It returns blob.ErrInvalidKey.
func (s *Store) Create(ctx context.Context, key string) (blob.Writer, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return newWriter(ctx, s, key), nil
}

// Open returns a reader over the committed blob after one HeadObject. The
// reader uses ctx for its GETs, so it is valid while ctx is. It returns
// blob.ErrInvalidKey, blob.ErrNotFound and blob.ErrUnavailable.
func (s *Store) Open(ctx context.Context, key string) (blob.Reader, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	object := s.objectName(key)
	h, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &object})
	if err != nil {
		return nil, notFound(err, key)
	}
	return &reader{ctx: ctx, s: s, object: object, key: key, etag: aws.ToString(h.ETag), size: aws.ToInt64(h.ContentLength)}, nil
}

// OpenSized returns a reader over key that trusts size and sends its
// first request at its first read (see blob.SizedOpener): a download
// costs one GET instead of a HEAD and a GET. That read returns
// blob.ErrNotFound or blob.ErrSize; OpenSized itself returns only
// blob.ErrInvalidKey, an error for a negative size, and the context's.
func (s *Store) OpenSized(ctx context.Context, key string, size int64) (blob.Reader, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("s3blob: negative size %d for %q", size, key)
	}
	return &reader{ctx: ctx, s: s, object: s.objectName(key), key: key, size: size}, nil
}

// Stat describes the committed blob (see the package doc for where its
// SHA-256 comes from). It returns blob.ErrInvalidKey, blob.ErrNotFound and
// blob.ErrUnavailable.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := checkKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	return s.statObject(ctx, s.objectName(key), key)
}

func (s *Store) statObject(ctx context.Context, object, key string) (blob.Info, error) {
	h, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &object})
	if err != nil {
		return blob.Info{}, notFound(err, key)
	}
	info := blob.Info{Size: aws.ToInt64(h.ContentLength), ModTime: aws.ToTime(h.LastModified)}
	info.SHA256 = metaSum(h.Metadata)
	if info.SHA256 == "" && aws.ToInt32(h.TagCount) > 0 {
		info.SHA256, err = s.tagSum(ctx, object)
		if err != nil {
			return blob.Info{}, notFound(err, key)
		}
	}
	if info.SHA256 == "" {
		if info.SHA256, err = s.rehash(ctx, object, aws.ToString(h.ETag)); err != nil {
			return blob.Info{}, notFound(err, key)
		}
	}
	return info, nil
}

// metaSum returns the sha256 user metadata, if well formed.
func metaSum(meta map[string]string) string {
	for k, v := range meta {
		if strings.EqualFold(k, metaSHA256) && validSum(v) {
			return v
		}
	}
	return ""
}

func validSum(v string) bool {
	if len(v) != 64 {
		return false
	}
	_, err := hex.DecodeString(v)
	return err == nil && strings.ToLower(v) == v
}

func (s *Store) tagSum(ctx context.Context, object string) (string, error) {
	out, err := s.c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &s.bucket, Key: &object})
	if err != nil {
		return "", err
	}
	for _, t := range out.TagSet {
		if aws.ToString(t.Key) == metaSHA256 && validSum(aws.ToString(t.Value)) {
			return aws.ToString(t.Value), nil
		}
	}
	return "", nil
}

// setTagSum records the SHA-256 of a blob whose metadata could not hold
// it. A failure only costs a rehash in a later Stat.
func (s *Store) setTagSum(ctx context.Context, object, sum string) {
	_, err := s.c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{
		Bucket:  &s.bucket,
		Key:     &object,
		Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String(metaSHA256), Value: aws.String(sum)}}},
	})
	if err != nil {
		slog.Warn("s3blob: cannot tag blob with its SHA-256", "object", object, "err", err)
	}
}

// rehash computes the SHA-256 of an object that lost (or never got) its
// recorded one, and records it as a tag.
func (s *Store) rehash(ctx context.Context, object, etag string) (string, error) {
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &object}
	if etag != "" {
		in.IfMatch = &etag
	}
	out, err := s.c.GetObject(ctx, in)
	if err != nil {
		return "", err
	}
	defer out.Body.Close()
	h := sha256.New()
	bp := s.copyBufs.Get().(*[]byte)
	defer s.copyBufs.Put(bp)
	if _, err := io.CopyBuffer(h, out.Body, *bp); err != nil {
		return "", mapErr(err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	s.setTagSum(ctx, object, sum)
	return sum, nil
}

// Delete removes the committed blob; a missing key is not an error. It
// returns blob.ErrInvalidKey and blob.ErrUnavailable.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.deleteObject(ctx, s.objectName(key))
}

func (s *Store) deleteObject(ctx context.Context, object string) error {
	_, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &object})
	if err != nil && !isNotFound(err) {
		return mapErr(err)
	}
	return nil
}

// Copy makes dst a server-side copy of src carrying src's SHA-256 as
// metadata. It returns blob.ErrInvalidKey, blob.ErrNotFound and
// blob.ErrUnavailable.
func (s *Store) Copy(ctx context.Context, src, dst string) (blob.Info, error) {
	if err := checkKey(src); err != nil {
		return blob.Info{}, err
	}
	if err := checkKey(dst); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	info, err := s.Stat(ctx, src)
	if err != nil || src == dst {
		return info, err
	}
	mod, err := s.copyObject(ctx, s.objectName(src), s.objectName(dst), info)
	if err != nil {
		return blob.Info{}, notFound(err, src)
	}
	info.ModTime = mod
	return info, nil
}

// copyObject copies object src to dst server side, setting the SHA-256
// metadata, and returns the copy's modification time.
func (s *Store) copyObject(ctx context.Context, src, dst string, info blob.Info) (time.Time, error) {
	meta := map[string]string{metaSHA256: info.SHA256}
	if info.Size <= s.copyLimit {
		out, err := s.c.CopyObject(ctx, encrypted(s, &s3.CopyObjectInput{
			Bucket:            &s.bucket,
			Key:               &dst,
			CopySource:        aws.String(s.copySource(src)),
			MetadataDirective: types.MetadataDirectiveReplace,
			Metadata:          meta,
		}))
		if err != nil {
			return time.Time{}, err
		}
		mod := time.Now()
		if out.CopyObjectResult != nil && out.CopyObjectResult.LastModified != nil {
			mod = *out.CopyObjectResult.LastModified
		}
		return mod, nil
	}
	return s.multipartCopy(ctx, src, dst, info.Size, meta)
}

// multipartCopy copies a source too large for CopyObject in parts of
// copyPartSize, a few at a time.
func (s *Store) multipartCopy(ctx context.Context, src, dst string, size int64, meta map[string]string) (time.Time, error) {
	up, err := s.c.CreateMultipartUpload(ctx, encrypted(s, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &dst, Metadata: meta}))
	if err != nil {
		return time.Time{}, err
	}
	id := aws.ToString(up.UploadId)
	s.addLive(id)
	defer s.dropLive(id)
	partSize := max(s.copyPart, (size+maxParts-1)/maxParts)
	n := int((size + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		first := int64(i) * partSize
		last := min(first+partSize, size) - 1
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out, err := s.c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
				Bucket:          &s.bucket,
				Key:             &dst,
				UploadId:        &id,
				PartNumber:      aws.Int32(int32(i + 1)),
				CopySource:      aws.String(s.copySource(src)),
				CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", first, last)),
			})
			if err != nil {
				errs[i] = err
				return
			}
			parts[i] = types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: out.CopyPartResult.ETag}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.abortUpload(dst, id)
		return time.Time{}, err
	}
	if _, err := s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &dst, UploadId: &id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		s.abortUpload(dst, id)
		return time.Time{}, err
	}
	return time.Now(), nil
}

// abortUpload aborts a multipart upload on a context of its own, so that
// it runs even when the caller's was cancelled.
func (s *Store) abortUpload(object, uploadID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &object, UploadId: &uploadID})
	if err != nil && !isNotFound(err) {
		slog.Warn("s3blob: abort multipart upload", "object", object, "err", err)
		return mapErr(err)
	}
	return nil
}

// Walk calls fn for every committed blob, listing objects/ page by page
// and asking each blob's SHA-256 with a HeadObject. Blobs committed or
// deleted while it runs may or may not be visited. It stops at and
// returns the first error from fn or ctx, and returns blob.ErrUnavailable.
func (s *Store) Walk(ctx context.Context, fn func(key string, info blob.Info) error) error {
	prefix := s.objectsPrefix()
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return mapErr(err)
		}
		for _, o := range page.Contents {
			if err := ctx.Err(); err != nil {
				return err
			}
			rest := strings.TrimPrefix(aws.ToString(o.Key), prefix)
			key := keyOf(rest)
			if strings.Contains(rest, "/") || checkKey(key) != nil {
				continue // not ours
			}
			info, err := s.statObject(ctx, aws.ToString(o.Key), key)
			if errors.Is(err, blob.ErrNotFound) {
				continue // deleted since the listing
			}
			if err != nil {
				return err
			}
			if err := fn(key, info); err != nil {
				return err
			}
		}
	}
	return nil
}

// PresignGet returns a URL that downloads the committed blob without
// credentials until ttl passes. The response is forced to
// Content-Disposition: attachment with filename and to
// application/octet-stream, so a browser never renders it inline. The URL
// is signed locally: it does not check that the blob exists. It returns
// blob.ErrInvalidKey.
func (s *Store) PresignGet(ctx context.Context, key, filename string, ttl time.Duration) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	object := s.objectName(key)
	req, err := s3.NewPresignClient(s.c).PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket:                     &s.bucket,
		Key:                        &object,
		ResponseContentDisposition: aws.String(attachment(filename)),
		ResponseContentType:        aws.String("application/octet-stream"),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("s3blob: presign %q: %w", key, err)
	}
	return req.URL, nil
}

// hashOf is a fresh SHA-256.
func hashOf() hash.Hash { return sha256.New() }

// crc32Of is the x-amz-checksum-crc32 value of b, so that the server
// verifies every body it stores.
func crc32Of(b []byte) *string {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.ChecksumIEEE(b))
	return aws.String(base64.StdEncoding.EncodeToString(sum[:]))
}
