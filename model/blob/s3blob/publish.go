package s3blob

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/filegate/filegate/model/blob"
)

// Publish turns partial upload id into the committed blob key; see the
// comment above for the steps. It returns blob.ErrInvalidKey,
// blob.ErrNotFound, blob.ErrOffset when another process changed the
// upload meanwhile, and blob.ErrUnavailable.
func (s *Store) Publish(ctx context.Context, id, key string) (blob.Info, error) {
	if err := checkKey(id); err != nil {
		return blob.Info{}, err
	}
	if err := checkKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	release := s.lockPartial(id)
	defer release()
	st, err := s.loadState(ctx, id)
	if err != nil {
		return blob.Info{}, err
	}
	h, err := st.hash()
	if err != nil {
		return blob.Info{}, err
	}
	info := blob.Info{Size: st.Size, SHA256: hex.EncodeToString(h.Sum(nil))}
	object := s.objectName(key)
	if st.UploadID == "" {
		info.ModTime, err = s.publishStaged(ctx, id, st, object, info.SHA256)
	} else {
		target := st.target(s, id)
		if !st.Assembled {
			if err := s.assemble(ctx, id, st); err != nil {
				return blob.Info{}, err
			}
		}
		if target == object {
			// Assembled in place (Config.PartialKey): only the tag is missing.
			s.setTagSum(ctx, object, info.SHA256)
			info.ModTime = time.Now()
		} else {
			info.ModTime, err = s.copyObject(ctx, target, object, info)
			err = mapErr(err)
		}
	}
	if err != nil {
		return blob.Info{}, err
	}
	if err := s.deleteObject(ctx, s.stateName(id)); err != nil {
		return blob.Info{}, err
	}
	if err := s.removePartialObjects(ctx, id); err != nil {
		slog.Warn("s3blob: clean up published upload", "id", id, "err", err)
	}
	if t := st.target(s, id); st.UploadID != "" && t != object && t != s.dataName(id) {
		// Assembled under the expected key, published under another.
		if err := s.deleteObject(ctx, t); err != nil {
			slog.Warn("s3blob: clean up published upload", "id", id, "err", err)
		}
	}
	return info, nil
}

// publishStaged writes an upload that never filled a part (its stages
// total less than 5 MiB) with one PutObject.
func (s *Store) publishStaged(ctx context.Context, id string, st *pstate, object, sum string) (time.Time, error) {
	body := make([]byte, 0, st.Size)
	for _, sg := range st.Stages {
		b, err := s.readStage(ctx, id, sg)
		if err != nil {
			return time.Time{}, err
		}
		body = append(body, b...)
	}
	if int64(len(body)) != st.Size {
		return time.Time{}, fmt.Errorf("s3blob: upload %q stages hold %d bytes, state says %d", id, len(body), st.Size)
	}
	_, err := s.c.PutObject(ctx, encrypted(s, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &object, Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), Metadata: map[string]string{metaSHA256: sum},
		ChecksumCRC32: crc32Of(body),
	}))
	if err != nil {
		return time.Time{}, mapErr(err)
	}
	return time.Now(), nil
}

func (s *Store) readStage(ctx context.Context, id string, sg stage) ([]byte, error) {
	object := s.stageName(id, sg.Off)
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &object, IfMatch: aws.String(sg.ETag)})
	if err != nil {
		return nil, fmt.Errorf("s3blob: upload %q: staged bytes at %d: %w", id, sg.Off, mapErr(err))
	}
	defer out.Body.Close()
	b := make([]byte, sg.Size)
	if _, err := io.ReadFull(out.Body, b); err != nil {
		return nil, fmt.Errorf("s3blob: upload %q: staged bytes at %d: %w", id, sg.Off, mapErr(err))
	}
	return b, nil
}

// assemble sends the stages as the last part, completes the multipart
// upload into its target and records that in state.json.
func (s *Store) assemble(ctx context.Context, id string, st *pstate) error {
	data := st.target(s, id)
	sizes := st.partSizes()
	last := int32(len(sizes)) + 1
	if len(st.Stages) > 0 {
		body := make([]byte, 0, st.staged())
		for _, sg := range st.Stages {
			b, err := s.readStage(ctx, id, sg)
			if err != nil {
				return err
			}
			body = append(body, b...)
		}
		_, err := s.c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.bucket, Key: &data, UploadId: &st.UploadID, PartNumber: aws.Int32(last),
			ContentLength: aws.Int64(int64(len(body))), Body: bytes.NewReader(body),
			ChecksumCRC32: crc32Of(body),
		})
		if err != nil {
			return s.assembledAlready(ctx, id, st, err)
		}
		sizes = append(sizes, int64(len(body)))
	}
	parts, err := s.listParts(ctx, data, st.UploadID, int32(len(sizes)))
	if err != nil {
		return s.assembledAlready(ctx, id, st, err)
	}
	for i, p := range parts {
		if aws.ToInt64(p.Size) != sizes[i] {
			return fmt.Errorf("s3blob: upload %q part %d holds %d bytes, state says %d", id, i+1, aws.ToInt64(p.Size), sizes[i])
		}
	}
	done := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		done[i] = types.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag, ChecksumCRC32: p.ChecksumCRC32}
	}
	_, err = s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &data, UploadId: &st.UploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
	})
	if err != nil {
		return s.assembledAlready(ctx, id, st, err)
	}
	st.Assembled = true
	return s.saveState(ctx, id, st, nil)
}

// assembledAlready handles a missing multipart upload while assembling:
// a crash after CompleteMultipartUpload left the target complete but the state
// unmarked. Any other error is returned mapped.
func (s *Store) assembledAlready(ctx context.Context, id string, st *pstate, err error) error {
	if apiCode(err) != "NoSuchUpload" {
		return mapErr(err)
	}
	data := st.target(s, id)
	h, herr := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &data})
	if herr != nil || aws.ToInt64(h.ContentLength) != st.Size {
		return fmt.Errorf("s3blob: upload %q lost its multipart upload: %w", id, mapErr(err))
	}
	st.Assembled = true
	return s.saveState(ctx, id, st, nil)
}

// listParts returns parts 1..n of a multipart upload, in order.
func (s *Store) listParts(ctx context.Context, object, uploadID string, n int32) ([]types.Part, error) {
	var parts []types.Part
	p := s3.NewListPartsPaginator(s.c, &s3.ListPartsInput{Bucket: &s.bucket, Key: &object, UploadId: &uploadID})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, part := range page.Parts {
			num := aws.ToInt32(part.PartNumber)
			if num >= 1 && num <= n {
				parts = append(parts, part)
			}
		}
	}
	for i, part := range parts {
		if aws.ToInt32(part.PartNumber) != int32(i+1) {
			return nil, fmt.Errorf("s3blob: multipart upload %s misses part %d", object, i+1)
		}
	}
	if int32(len(parts)) != n {
		return nil, fmt.Errorf("s3blob: multipart upload %s has %d of %d parts", object, len(parts), n)
	}
	return parts, nil
}

// Discard removes partial upload id: state.json first, so the upload is
// gone at once, then its multipart uploads and objects. A missing one is
// not an error. It returns blob.ErrInvalidKey and blob.ErrUnavailable.
func (s *Store) Discard(ctx context.Context, id string) error {
	if err := checkKey(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	release := s.lockPartial(id)
	defer release()
	st, err := s.loadState(ctx, id)
	if err != nil && !errors.Is(err, blob.ErrNotFound) {
		return err
	}
	if err := s.deleteObject(ctx, s.stateName(id)); err != nil {
		return err
	}
	if st != nil && st.UploadID != "" {
		t := st.target(s, id)
		if err := s.abortUpload(t, st.UploadID); err != nil {
			return err
		}
		if st.Assembled && t != s.dataName(id) {
			// Completed in place but never published: nobody has it.
			if err := s.deleteObject(ctx, t); err != nil {
				return err
			}
		}
	}
	if err := s.abortUploadsOf(ctx, s.dataName(id)); err != nil {
		return err
	}
	return s.removePartialObjects(ctx, id)
}

// abortUploadsOf aborts every multipart upload on object.
func (s *Store) abortUploadsOf(ctx context.Context, object string) error {
	out, err := s.c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &object})
	if err != nil {
		return mapErr(err)
	}
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) != object {
			continue
		}
		if err := s.abortUpload(object, aws.ToString(u.UploadId)); err != nil {
			return err
		}
	}
	return nil
}

// removePartialObjects deletes everything under partial/<name>/ but
// state.json.
func (s *Store) removePartialObjects(ctx context.Context, id string) error {
	dir := s.partialDir(id)
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &dir})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return mapErr(err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if strings.HasSuffix(k, "/state.json") {
				continue
			}
			if err := s.deleteObject(ctx, k); err != nil {
				return err
			}
		}
	}
	return nil
}
