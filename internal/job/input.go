package job

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxFieldBytes bounds each field of a submission: ids and file names,
// which the job's document, its failure reasons and its workers'
// environments repeat.
const MaxFieldBytes = 1024

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

		if !storable(raw) {
			return NewJob{}, fmt.Errorf("%w: %s must not contain NUL characters or lone surrogates",
				ErrInvalid, f.name)
		}

		if len(*f.dst) > MaxFieldBytes {
			return NewJob{}, fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, f.name, MaxFieldBytes)
		}
	}

	return req, nil
}

// MaxResultsPerPost bounds the results one post may carry. A post holds
// the results of one stage's workers at most, and each is applied with
// the job locked.
const MaxResultsPerPost = 1000

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

	// Results are kept as they were sent.
	if err := checkStorable(body); err != nil {
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

	if len(fields) > MaxResultsPerPost {
		return Command{}, fmt.Errorf("%w: %d results in one post; at most %d",
			ErrInvalid, len(fields), MaxResultsPerPost)
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

// parseObject checks that body is one JSON object and returns its fields
// undecoded.
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

	return fields, nil
}

// checkStorable checks that PostgreSQL can keep a valid JSON text as JSONB
// as it is.
func checkStorable(body []byte) error {
	if !storable(body) {
		return fmt.Errorf("%w: strings must not contain NUL characters or lone surrogates", ErrInvalid)
	}

	return numbersFit(body)
}

// storable reports whether PostgreSQL can store a valid JSON text as
// JSONB: it refuses the escape \u0000 and UTF-16 surrogates that are not
// in pairs, both of which JSON itself allows.
func storable(body []byte) bool {
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}

		if body[i+1] != 'u' {
			i++ // an escaped character, which may itself be a backslash
			continue
		}

		code := hex4(body[i+2 : i+6])
		i += 5

		switch {
		case code == 0:
			return false
		case code >= 0xDC00 && code <= 0xDFFF:
			return false // a low surrogate with no high one before it
		case code >= 0xD800 && code <= 0xDBFF:
			if i+6 >= len(body) || body[i+1] != '\\' || body[i+2] != 'u' {
				return false
			}

			if low := hex4(body[i+3 : i+7]); low < 0xDC00 || low > 0xDFFF {
				return false
			}

			i += 6
		}
	}

	return true
}

// MaxNumberDigits bounds the digits a number in a result may have before
// and after the decimal point once written out. JSONB stores numbers in
// PostgreSQL's numeric type, which writes 1e1000 out as a thousand digits:
// a few bytes sent could otherwise grow to megabytes in every document
// and every read of it. (PostgreSQL's own limits, 131,072 and 16,383
// digits, are far beyond any sensor reading or count.)
const MaxNumberDigits = 1000

// numbersFit checks that every number in a valid JSON text fits
// PostgreSQL's numeric type. It scans the text rather than decoding it:
// results are checked on every post.
func numbersFit(body []byte) error {
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case inString && c == '\\':
			i++ // skip the escaped character
		case c == '"':
			inString = !inString
		case !inString && (c == '-' || (c >= '0' && c <= '9')):
			j := i
			for j < len(body) && strings.IndexByte("+-.0123456789eE", body[j]) >= 0 {
				j++
			}

			if n := string(body[i:j]); !numberFits(n) {
				return fmt.Errorf("%w: number %.20s… is too large or too precise to keep", ErrInvalid, n)
			}

			i = j - 1
		}
	}

	return nil
}

func numberFits(n string) bool {
	mantissa, exp := strings.TrimPrefix(n, "-"), 0
	if i := strings.IndexAny(mantissa, "eE"); i >= 0 {
		e, err := strconv.Atoi(mantissa[i+1:])
		if err != nil {
			return false
		}

		mantissa, exp = mantissa[:i], e
	}

	whole, frac, _ := strings.Cut(mantissa, ".")
	whole = strings.TrimLeft(whole, "0")

	before := len(whole) + exp
	after := len(frac) - exp

	return before <= MaxNumberDigits && after <= MaxNumberDigits
}

// hex4 reads the four hex digits of a \u escape in valid JSON.
func hex4(b []byte) int {
	n, _ := strconv.ParseUint(string(b), 16, 32)

	return int(n)
}

// firstByte returns the first byte of a JSON text that is not white space.
func firstByte(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}

	return b[0]
}
