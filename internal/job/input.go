package job

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// NewJob is what a client posts to submit a job.
type NewJob struct {
	Hash     string
	DsID     string
	FileName string
}

// ID returns the id the submitted job gets.
func (n NewJob) ID() string {
	return ID(n.DsID, n.Hash)
}

// ParseNewJob reads a submission: a JSON object whose hash, ds_id and
// file_name are non-empty strings. Other fields are ignored.
func ParseNewJob(body []byte) (NewJob, error) {
	fields, err := parseObject(body)
	if err != nil {
		return NewJob{}, err
	}

	var req NewJob
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"hash", &req.Hash},
		{"ds_id", &req.DsID},
		{"file_name", &req.FileName},
	} {
		raw, ok := fields[f.name]
		if !ok {
			return NewJob{}, fmt.Errorf("%w: %s is missing", ErrInvalid, f.name)
		}

		if err := json.Unmarshal(raw, f.dst); err != nil || *f.dst == "" {
			return NewJob{}, fmt.Errorf("%w: %s must be a non-empty string", ErrInvalid, f.name)
		}
	}

	return req, nil
}

// Command is a client's request about an active job: either an abort or
// results from workers.
type Command struct {
	// Abort is set when the request asks to abort the job.
	Abort bool
	// Results maps worker instance ids to the outputs each reported.
	Results map[string][]json.RawMessage
}

// ParseCommand reads what a client posts to a job: {"status": "aborted"},
// or an object from worker instance ids to results, each a list of output
// objects or one output object.
func ParseCommand(body []byte) (Command, error) {
	fields, err := parseObject(body)
	if err != nil {
		return Command{}, err
	}

	if raw, ok := fields["status"]; ok && len(fields) == 1 {
		var status string
		if err := json.Unmarshal(raw, &status); err != nil || Status(status) != StatusAborted {
			return Command{}, fmt.Errorf("%w: status can only be %q", ErrInvalid, StatusAborted)
		}

		return Command{Abort: true}, nil
	}

	if len(fields) == 0 {
		return Command{}, fmt.Errorf("%w: no results", ErrInvalid)
	}

	results := make(map[string][]json.RawMessage, len(fields))
	for instance, raw := range fields {
		if instance == "" {
			return Command{}, fmt.Errorf("%w: empty instance id", ErrInvalid)
		}

		outputs, err := parseOutputs(raw)
		if err != nil {
			return Command{}, fmt.Errorf("%w: result of %q: %w", ErrInvalid, instance, err)
		}

		results[instance] = outputs
	}

	return Command{Results: results}, nil
}

// parseOutputs reads one result: a list of objects, or a single object.
func parseOutputs(raw json.RawMessage) ([]json.RawMessage, error) {
	switch firstByte(raw) {
	case '{':
		return []json.RawMessage{raw}, nil
	case '[':
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, err
		}

		for _, item := range list {
			if firstByte(item) != '{' {
				return nil, fmt.Errorf("outputs must be objects")
			}
		}

		return list, nil
	default:
		return nil, fmt.Errorf("must be an object or a list of objects")
	}
}

// parseObject checks that body is one JSON object that the database can
// store as it is, and returns its fields undecoded.
func parseObject(body []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: body is not valid UTF-8", ErrInvalid)
	}

	if firstByte(body) != '{' {
		return nil, fmt.Errorf("%w: body must be a JSON object", ErrInvalid)
	}

	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("%w: body is not valid JSON", ErrInvalid)
	}

	if hasNUL(body) {
		return nil, fmt.Errorf("%w: strings must not contain NUL characters", ErrInvalid)
	}

	return fields, nil
}

// hasNUL reports whether a valid JSON text has a string holding U+0000,
// which PostgreSQL cannot store in JSONB or text.
func hasNUL(body []byte) bool {
	if !bytes.Contains(body, []byte(`\u0000`)) {
		return false
	}

	var v any
	_ = json.Unmarshal(body, &v)

	return containsNUL(v)
}

func containsNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.ContainsRune(v, 0)
	case []any:
		for _, item := range v {
			if containsNUL(item) {
				return true
			}
		}
	case map[string]any:
		for key, item := range v {
			if strings.ContainsRune(key, 0) || containsNUL(item) {
				return true
			}
		}
	}

	return false
}

// firstByte returns the first byte of a JSON text that is not white space.
func firstByte(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}

	return b[0]
}
