// Package s3blob keeps blobs in an S3-compatible bucket (AWS S3, MinIO,
// Ceph RGW, versitygw) through aws-sdk-go-v2.
//
// # Layout
//
// Under the configured prefix:
//
//	objects/<name>                 committed blobs
//	partial/<name>/state.json      state of a resumable upload
//	partial/<name>/stage-<offset>  staged bytes of a resumable upload
//	partial/<name>/data            its bytes, assembled while publishing
//	                               (or objects/<PartialKey(id)>, see below)
//
// <name> is the key (or upload id) with every "/" replaced by "+", a
// character keys cannot hold: objects/ stays flat, so "a" and "a/b" can
// both exist even on backends that map keys to files (versitygw posix).
//
// # Writing
//
// A Writer fills part buffers (8 MiB by default), reading a source
// straight into them (ReadFrom, which io.Copy prefers). SHA-256 is the
// largest CPU cost of a write, so a goroutine of the writer hashes the
// bytes in order, 1 MiB at a time as they arrive, on another core than
// the one reading them, and what is left of a part while it uploads; a
// buffer goes back to the pool once it is both hashed and uploaded.
// Append hashes its chunk's bytes the same way. A blob smaller than one part is sent with one PutObject
// carrying its SHA-256 as x-amz-meta-sha256. A larger one becomes a
// multipart upload on objects/<name>: full buffers are uploaded as parts,
// at most Concurrency at a time, so memory stays at (Concurrency+1)
// buffers whatever the blob's size. Commit is CompleteMultipartUpload,
// which makes the blob visible in one step; Abort is
// AbortMultipartUpload. Part buffers grow by 8 MiB every 1000 parts, so
// the 10,000-part limit is reached only at about 440 GiB.
//
// Every body carries an x-amz-checksum-crc32 computed from its buffer, so
// the server checks what it stores, and is signed as UNSIGNED-PAYLOAD:
// SigV4's payload SHA-256 would be a second hash pass over every byte
// (for the server too, which must verify it), and left to the SDK an
// unsigned body's checksum travels in an aws-chunked trailer that
// servers decode slowly. The signature still covers the request line and
// headers, the CRC32 among them, so a body changed by accident fails at
// the server. What UNSIGNED-PAYLOAD gives up is protection against
// someone on the path rewriting a body and its CRC32 together, which TLS
// provides: use an https endpoint unless the network to the S3 server is
// trusted (on plain http such an attacker can read every byte anyway).
//
// S3 takes metadata when a multipart upload starts, before the SHA-256 is
// known, so a multipart blob gets its SHA-256 as the object tag sha256
// right after CompleteMultipartUpload (tags change without rewriting the
// object). Stat reads the metadata, then the tag; a blob with neither (a
// crash between the two calls) is hashed from its bytes once and tagged.
//
// # Reading, copying, listing
//
// Open makes one HeadObject; Seek only moves the offset, Read opens a GET
// from the offset and keeps reading it while reads are sequential, and
// ReadAt makes one ranged GET for exactly its range. A read from offset 0
// asks for the whole object without a Range header: file-backed servers
// (versitygw's posix backend) send a whole object with sendfile but copy
// any range, even "bytes=0-", through a buffer. Every GET carries
// If-Match with the ETag seen at Open. OpenSized (blob.SizedOpener) skips
// the HeadObject: it trusts the size filegate recorded, and the reader's
// first GET checks it (Content-Length, or the total of Content-Range) and
// takes its ETag for the GETs that follow, so a download is one request,
// and a HEAD or a 304 none: on a remote S3 the HeadObject was a whole
// round trip before the first byte. Copy is a server-side
// CopyObject (a multipart UploadPartCopy above 5 GiB) that sets the
// SHA-256 metadata on the copy. Walk lists objects/ with ListObjectsV2.
//
// # Resumable uploads
//
// A partial upload id lives under partial/<name>/. Its bytes are, in
// order, the parts of one multipart upload followed by a few staged
// objects stage-<offset>. Parts are at least 5 MiB (S3's minimum for all
// parts but the last); a chunk's tail that does not fill one is staged as
// an object of its own, so every byte Append acknowledges is durable in
// S3. When staged and new bytes together fill a part, the staged bytes
// are read back (they are smaller than one part) and sent at the head of
// that part, and the stage objects are deleted.
//
// state.json says which parts (their sizes, run-length coded) and stages
// (offset, size, ETag) make up the upload, its size, the multipart
// upload's id and target, and the marshalled SHA-256 state over all its
// bytes, so Publish never rereads what was hashed once. Append uploads
// parts and stages first and writes state.json last, with If-Match on the
// ETag it read (If-None-Match for a new upload): the state never names
// data that is not in S3, and a second writer racing on the same id (a
// caller bug the tus locker prevents) fails with blob.ErrOffset instead
// of overwriting. The accept callback runs after the chunk is read and
// before state.json is written; bytes read before the client failed are
// made durable on a context that outlives the request.
//
// Crash points, and why no acknowledged byte is lost or counted twice:
//   - before state.json is written: the old state still holds; the chunk
//     was never acknowledged. Its parts have numbers past the recorded
//     ones and are overwritten by the next Append or left out of
//     CompleteMultipartUpload; its stage object is overwritten by the next
//     stage at that offset or removed by Publish, Discard or Sweep; a
//     multipart upload it created is named by no state and Sweep aborts it.
//   - after state.json, before merged stages are deleted: they are
//     unreferenced leftovers, removed the same way.
//   - during Publish: the last stages become the last part,
//     CompleteMultipartUpload assembles the target, and state.json is
//     marked assembled; unless the target is objects/<key> already, it is
//     copied server side to objects/<key> with its SHA-256 metadata; then
//     state.json is deleted, then the leftovers. Every step is safe to
//     repeat, and a retry after a crash between completing and marking
//     finds the upload gone and the target of the recorded size in place.
//
// S3 cannot rename, and a multipart upload's object name is fixed when it
// starts, before Publish names the key. By default the target is
// partial/<name>/data and Publish costs one server-side copy; with
// Config.PartialKey, which names the key Publish will be given (tus
// publishes under a key derived from the upload id), the target is that
// key under objects/ and Publish completes in place. An upload that never
// filled a part is published with a single PutObject.
//
// # Memory
//
// Nothing holds a whole blob. The bounds, per operation in flight:
//   - Writer: Concurrency+1 part buffers (the one filling and those being
//     uploaded), 3 × 8 MiB = 24 MiB with the defaults. Buffers of
//     PartSize are pooled across writers; from part 1001 on a blob's
//     parts grow by PartSize every 1000 parts, so only blobs above about
//     8 GiB use larger ones (at most 3 × 80 MiB, near the 440 GiB limit).
//   - Append: the same bound; staged bytes read back for a part go into
//     the head of that part's buffer.
//   - Publish of an upload that never filled a part: its staged bytes,
//     less than 5 MiB.
//   - Reader: no buffer of its own for Read; WriteTo (and a rehash)
//     copies through one pooled 4 MiB buffer: on a large transfer the
//     socket has megabytes queued, and one read and one write per 4 MiB
//     cost about half the CPU of 256 KiB ones. The HTTP transport adds
//     256 KiB read and write buffers per connection.
//   - Copy, multipart copy and Publish's copy run server side and move no
//     bytes through the process; a rehash reads through 256 KiB.
//
// # Failures
//
// The SDK's standard retryer retries throttling (503 SlowDown), 5xx
// answers, timeouts and connection errors with jittered exponential
// backoff (MaxAttempts, MaxBackoff). What still fails maps to the blob
// errors: NoSuchKey is blob.ErrNotFound; connection errors, timeouts and
// 5xx are blob.ErrUnavailable, which the gateway answers with 503 and
// Retry-After.
//
// Credentials come from the standard AWS sources (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, shared files, instance roles) through
// config.LoadDefaultConfig, and so does AWS_CA_BUNDLE for https endpoints.
package s3blob
