package s3blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/filegate/filegate/model/blob"
)

// apiCode returns the S3 error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isNotFound reports a missing object or multipart upload.
func isNotFound(err error) bool {
	switch apiCode(err) {
	case "NoSuchKey", "NotFound", "NoSuchUpload":
		return true
	}
	return false
}

// isPrecondition reports a failed If-Match or If-None-Match.
func isPrecondition(err error) bool {
	return apiCode(err) == "PreconditionFailed" || httpStatus(err) == 412
}

// mapErr makes SDK errors answer to errors.Is with the blob errors:
// missing objects are blob.ErrNotFound; what means the server cannot be
// used right now (after the retryer gave up) is blob.ErrUnavailable. The
// caller's own cancellation stays as it is.
func mapErr(err error) error {
	if err == nil || errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrUnavailable) {
		return err
	}
	if isNotFound(err) {
		return fmt.Errorf("%w: %w", blob.ErrNotFound, err)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %w", blob.ErrUnavailable, err)
	}
	return err
}

func unavailable(err error) bool {
	switch apiCode(err) {
	case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed":
		return true
	}
	if httpStatus(err) >= 500 {
		return true
	}
	var ne net.Error
	var maxAttempts *retry.MaxAttemptsError
	return errors.As(err, &ne) || errors.As(err, &maxAttempts) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}

// notFound maps err, naming the key in a missing-object error.
func notFound(err error, key string) error {
	err = mapErr(err)
	if errors.Is(err, blob.ErrNotFound) {
		return fmt.Errorf("%w: %q", blob.ErrNotFound, key)
	}
	return err
}

// attachment is a Content-Disposition that makes browsers download.
func attachment(filename string) string {
	if filename == "" {
		return "attachment"
	}
	if v := mime.FormatMediaType("attachment", map[string]string{"filename": filename}); v != "" {
		return v
	}
	return "attachment"
}
