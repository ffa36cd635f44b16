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
//   - multipart uploads no state.json names: of writers that never
//     committed or aborted, and of Appends that crashed before their first
//     state write (the time of an upload's newest part counts, so a slow
//     live writer of another process is spared);
//   - objects under partial/ that no state.json names: stages of Appends
//     that crashed or lost a race, and what a crashed Publish or Discard
//     left behind.
//
// Uploads of this process in flight and everything a live partial upload
// refers to are never touched; committed blobs are never listed. Partial
// uploads themselves expire through Discard. It returns how many uploads
// and objects it removed, and blob.ErrUnavailable.
func (s *Store) Sweep(ctx context.Context, before time.Time) (int, error) {
	states, err := s.partialStates(ctx)
	if err != nil {
		return 0, err
	}
	n, err := s.sweepUploads(ctx, before, states)
	if err != nil {
		return n, err
	}
	m, err := s.sweepPartials(ctx, before, states)
	return n + m, err
}

// partialStates reads the state.json of every partial upload.
func (s *Store) partialStates(ctx context.Context) (map[string]*pstate, error) {
	prefix := s.base + "partial/"
	states := make(map[string]*pstate)
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr(err)
		}
		for _, o := range page.Contents {
			nm, ok := strings.CutSuffix(strings.TrimPrefix(aws.ToString(o.Key), prefix), "/state.json")
			if !ok || strings.Contains(nm, "/") {
				continue
			}
			id := keyOf(nm)
			st, err := s.loadState(ctx, id)
			if errors.Is(err, blob.ErrNotFound) {
				continue // published or discarded since the listing
			}
			if err != nil {
				return nil, err
			}
			states[id] = st
		}
	}
	return states, nil
}

func (s *Store) sweepUploads(ctx context.Context, before time.Time, states map[string]*pstate) (int, error) {
	named := make(map[string]bool, len(states))
	for _, st := range states {
		if st.UploadID != "" {
			named[st.UploadID] = true
		}
	}
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
			if s.isLive(id) || named[id] || !aws.ToTime(u.Initiated).Before(before) {
				continue // in flight here, a live partial upload, or young
			}
			if !strings.HasPrefix(object, s.objectsPrefix()) && !strings.HasPrefix(object, s.base+"partial/") {
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

func (s *Store) sweepPartials(ctx context.Context, before time.Time, states map[string]*pstate) (int, error) {
	prefix := s.base + "partial/"
	refs := make(map[string]bool) // stage objects live uploads name
	for id, st := range states {
		for _, sg := range st.Stages {
			refs[s.stageName(id, sg.Off)] = true
		}
	}
	n := 0
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
			id := keyOf(nm)
			if states[id] != nil && (file == "data" || refs[object]) {
				continue // a live upload's bytes; data exists only while publishing
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
