package s3blob

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/filegate/filegate/model/blob"
)

// Sweep removes leftovers whose last write is older than before:
//   - multipart uploads of writers that never committed or aborted (the
//     time of their newest part counts, so a slow live writer of another
//     process is spared), and multipart uploads under partial/ that no
//     state.json names;
//   - objects under partial/ that no state.json names: stages of Appends
//     that crashed or lost a race, and what a crashed Publish or Discard
//     left behind.
//
// Uploads of this process in flight and everything a live partial upload
// refers to are never touched; committed blobs are never listed. Partial
// uploads themselves expire through Discard. It returns how many uploads
// and objects it removed, and blob.ErrUnavailable.
func (s *Store) Sweep(ctx context.Context, before time.Time) (int, error) {
	n, err := s.sweepUploads(ctx, before)
	if err != nil {
		return n, err
	}
	m, err := s.sweepPartials(ctx, before)
	return n + m, err
}

func (s *Store) sweepUploads(ctx context.Context, before time.Time) (int, error) {
	n := 0
	in := &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: aws.String(s.base)}
	for {
		page, err := s.c.ListMultipartUploads(ctx, in)
		if err != nil {
			return n, mapErr(err)
		}
		for _, u := range page.Uploads {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			object, id := aws.ToString(u.Key), aws.ToString(u.UploadId)
			if s.isLive(id) || !aws.ToTime(u.Initiated).Before(before) {
				continue
			}
			if pid, ok := s.partialOf(object); ok {
				st, err := s.loadState(ctx, pid)
				if err == nil && st.UploadID == id {
					continue // a live partial upload
				}
				if err != nil && !errors.Is(err, blob.ErrNotFound) {
					return n, err
				}
			} else if !strings.HasPrefix(object, s.objectsPrefix()) {
				continue // not ours
			}
			last, err := s.lastPart(ctx, object, id)
			if err != nil {
				if isNotFound(err) {
					continue // completed or aborted meanwhile
				}
				return n, mapErr(err)
			}
			if !last.Before(before) {
				continue
			}
			if err := s.abortUpload(object, id); err != nil {
				return n, err
			}
			n++
		}
		if !aws.ToBool(page.IsTruncated) {
			return n, nil
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

// partialOf returns the upload id whose data object is object.
func (s *Store) partialOf(object string) (string, bool) {
	rest, ok := strings.CutPrefix(object, s.base+"partial/")
	if !ok {
		return "", false
	}
	nm, ok := strings.CutSuffix(rest, "/data")
	if !ok || strings.Contains(nm, "/") {
		return "", false
	}
	return keyOf(nm), true
}

// lastPart returns when the newest part of an upload was written, or
// the zero time when it has none.
func (s *Store) lastPart(ctx context.Context, object, uploadID string) (time.Time, error) {
	var last time.Time
	p := s3.NewListPartsPaginator(s.c, &s3.ListPartsInput{Bucket: &s.bucket, Key: &object, UploadId: &uploadID})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return time.Time{}, err
		}
		for _, part := range page.Parts {
			if t := aws.ToTime(part.LastModified); t.After(last) {
				last = t
			}
		}
	}
	return last, nil
}

func (s *Store) sweepPartials(ctx context.Context, before time.Time) (int, error) {
	prefix := s.base + "partial/"
	n := 0
	var (
		cur   string          // upload id whose objects are being visited
		refs  map[string]bool // objects its state.json names; nil when it has none
		state bool
	)
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, mapErr(err)
		}
		for _, o := range page.Contents {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			object := aws.ToString(o.Key)
			nm, file, ok := strings.Cut(strings.TrimPrefix(object, prefix), "/")
			if !ok || strings.Contains(file, "/") || file == "state.json" {
				continue
			}
			if id := keyOf(nm); id != cur {
				cur = id
				refs, state, err = s.partialRefs(ctx, id)
				if err != nil {
					return n, err
				}
			}
			if state && (refs[object] || file == "data") {
				continue // a live upload's bytes; data only exists while publishing
			}
			if !aws.ToTime(o.LastModified).Before(before) {
				continue
			}
			if err := s.deleteObject(ctx, object); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// partialRefs returns the stage objects upload id's state.json names,
// and whether it has a state.json at all.
func (s *Store) partialRefs(ctx context.Context, id string) (map[string]bool, bool, error) {
	st, err := s.loadState(ctx, id)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	refs := make(map[string]bool, len(st.Stages))
	for _, sg := range st.Stages {
		refs[s.stageName(id, sg.Off)] = true
	}
	return refs, true, nil
}
