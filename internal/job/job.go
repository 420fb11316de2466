// Package job holds the rules of the job document: how an id is made, how
// a new job looks, and which input the service accepts. It does no I/O.
package job

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"
)

// Domain errors. The HTTP layer maps each to a status code.
var (
	// ErrNotFound means no job has the id asked for.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the job is in a state that forbids the request:
	// a job with that id is already active, or the job has ended.
	ErrConflict = errors.New("conflict")
	// ErrInvalid means the request's content breaks a rule of the API.
	ErrInvalid = errors.New("invalid")
)

// Status is where a job is in its life.
type Status string

// The statuses of a job. Pending and running jobs are active; the others
// are ended and live in history.
const (
	StatusPending  Status = "pending"
	StatusRunning  Status = "running"
	StatusFinished Status = "finished"
	StatusFailed   Status = "failed"
	StatusAborted  Status = "aborted"
)

// ID returns the id of the job for a data source and a file hash: the MD5
// digest of both, unseparated, in URL-safe base64 without padding. The same
// file from the same source always gets the same id, which is what lets the
// service refuse a second active job for it.
func ID(dsID, hash string) string {
	sum := md5.Sum([]byte(dsID + hash))

	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ValidID reports whether id has the form of a job id: 22 characters of
// URL-safe base64.
func ValidID(id string) bool {
	if len(id) != 22 {
		return false
	}

	for _, r := range id {
		ok := r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return false
		}
	}

	return true
}

// timeLayout is how every timestamp of a document is written: UTC with
// microseconds and a trailing Z, as the original service wrote them.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// Time is a timestamp written the way job documents write them.
type Time struct{ time.Time }

// NewTime returns t as a document timestamp, cut to microseconds.
func NewTime(t time.Time) Time {
	return Time{t.UTC().Truncate(time.Microsecond)}
}

// MarshalJSON writes the timestamp in the document's layout.
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(timeLayout) + `"`), nil
}

// UnmarshalJSON reads a timestamp in any RFC 3339 form.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}

	parsed, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}

	t.Time = parsed.UTC()

	return nil
}

// InitSource names the uploaded file a job starts from.
type InitSource struct {
	InitSource string `json:"init_source"`
}

// Stage is the record of one stage of a job. Inputs and outputs are kept
// as raw JSON so that every value reads back exactly as a worker sent it.
type Stage struct {
	Inputs    []json.RawMessage `json:"inputs"`
	Outputs   []json.RawMessage `json:"outputs"`
	Started   Time              `json:"started"`
	Completed Time              `json:"completed"`
	// Log holds what the stage's workers wrote, when the platform kept it.
	Log string `json:"log,omitempty"`
}

// Job is the document of one job, as the API shows it. The pointer fields
// stay null until the job's data source has been resolved.
type Job struct {
	DsID             string           `json:"ds_id"`
	InitSources      []InitSource     `json:"init_sources"`
	Status           Status           `json:"status"`
	Stages           map[string]Stage `json:"stages"`
	PipelineID       *string          `json:"pipeline_id"`
	Created          Time             `json:"created"`
	DsPlatformID     *string          `json:"ds_platform_id"`
	DsPlatformTypeID *string          `json:"ds_platform_type_id"`
	// Reason says why a job failed.
	Reason string `json:"reason,omitempty"`
}

// New returns the document of a job that has just been submitted.
func New(req NewJob, now time.Time) Job {
	return Job{
		DsID:        req.DsID,
		InitSources: []InitSource{{InitSource: req.FileName}},
		Status:      StatusPending,
		Stages:      map[string]Stage{},
		Created:     NewTime(now),
	}
}

// Document is a stored job document with its id, ready to be sent as it is.
type Document struct {
	ID   string
	JSON json.RawMessage
}
