package job_test

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

// md5ID works out a job id the long way: padded URL-safe base64 of the
// digest, with the padding cut off afterwards.
func md5ID(dsID, hash string) string {
	sum := md5.Sum([]byte(dsID + hash))

	return strings.TrimRight(base64.URLEncoding.EncodeToString(sum[:]), "=")
}

func TestIDIsUnpaddedURLSafeBase64OfMD5(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		dsID string
		hash string
		want string
	}{
		{
			name: "contract example data source",
			dsID: "098z0g976gf76ftfj",
			hash: "9f86d081884c7d659a2feaa0c55ad015",
			// Worked out with Python's hashlib and base64.urlsafe_b64encode.
			want: "xqa1rw7juZNfWw2t1RUttA",
		},
		{
			name: "digest whose base64 holds URL-safe characters",
			dsID: "ds-1",
			hash: "abc",
			want: "qES1mZo_-wzJFj98h3BR0g",
		},
		{name: "non-ASCII bytes", dsID: "quelle-ä", hash: "哈希", want: md5ID("quelle-ä", "哈希")},
		{name: "empty inputs", dsID: "", hash: "", want: md5ID("", "")},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got := job.ID(tt.dsID, tt.hash)

			assert.Equal(t, tt.want, got)
			assert.Equal(t, md5ID(tt.dsID, tt.hash), got)
			assert.Len(t, got, 22)
			assert.Regexp(t, idPattern, got)
		})
	}
}

func TestIDIsStableForSameInputs(t *testing.T) {
	t.Parallel()

	first := job.ID("098z0g976gf76ftfj", "hash-1")
	second := job.ID("098z0g976gf76ftfj", "hash-1")

	assert.Equal(t, first, second)
	assert.Equal(t, first, job.NewJob{DsID: "098z0g976gf76ftfj", Hash: "hash-1"}.ID())
}

func TestIDDiffersForDifferentInputs(t *testing.T) {
	t.Parallel()

	base := job.ID("ds-1", "hash-1")
	others := map[string]string{
		"other hash":        job.ID("ds-1", "hash-2"),
		"other data source": job.ID("ds-2", "hash-1"),
		"swapped":           job.ID("hash-1", "ds-1"),
	}

	for name, id := range others {
		assert.NotEqual(t, base, id, name)
	}
}

func TestIDJoinsDataSourceAndHashWithoutSeparator(t *testing.T) {
	t.Parallel()

	// The contract hashes ds_id followed directly by hash, so only the
	// concatenation counts.
	assert.Equal(t, job.ID("ab", "c"), job.ID("a", "bc"))
	assert.Equal(t, md5ID("abc", ""), job.ID("ab", "c"))
}

func TestTimeMarshalsUTCWithMicrosecondsAndZ(t *testing.T) {
	t.Parallel()

	plus2 := time.FixedZone("UTC+2", 2*60*60)
	minus730 := time.FixedZone("UTC-7:30", -(7*60+30)*60)

	tests := []struct {
		name string
		in   job.Time
		want string
	}{
		{
			name: "microseconds as given",
			in:   job.NewTime(time.Date(2020, 11, 20, 7, 42, 32, 783796000, time.UTC)),
			want: `"2020-11-20T07:42:32.783796Z"`,
		},
		{
			name: "zero fraction keeps six digits",
			in:   job.NewTime(time.Date(2020, 11, 20, 7, 42, 32, 0, time.UTC)),
			want: `"2020-11-20T07:42:32.000000Z"`,
		},
		{
			name: "one microsecond keeps leading zeros",
			in:   job.NewTime(time.Date(2020, 11, 20, 7, 42, 32, 1000, time.UTC)),
			want: `"2020-11-20T07:42:32.000001Z"`,
		},
		{
			name: "nanoseconds cut, not rounded",
			in:   job.NewTime(time.Date(2020, 11, 20, 7, 42, 32, 783796999, time.UTC)),
			want: `"2020-11-20T07:42:32.783796Z"`,
		},
		{
			name: "nanoseconds cut without NewTime",
			in:   job.Time{Time: time.Date(2020, 11, 20, 7, 42, 32, 999999999, time.UTC)},
			want: `"2020-11-20T07:42:32.999999Z"`,
		},
		{
			name: "east of UTC converted",
			in:   job.NewTime(time.Date(2020, 11, 20, 9, 42, 32, 783796000, plus2)),
			want: `"2020-11-20T07:42:32.783796Z"`,
		},
		{
			name: "west of UTC converted across midnight",
			in:   job.Time{Time: time.Date(2020, 11, 19, 23, 30, 0, 500000000, minus730)},
			want: `"2020-11-20T07:00:00.500000Z"`,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := json.Marshal(tt.in)

			require.NoError(t, err)
			assert.Equal(t, tt.want, string(got))
		})
	}
}

func TestTimeRoundTripsThroughJSON(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		in   time.Time
	}{
		{name: "UTC", in: time.Date(2020, 11, 20, 7, 42, 32, 783796000, time.UTC)},
		{name: "zero fraction", in: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)},
		{
			name: "offset zone",
			in:   time.Date(2020, 11, 20, 9, 42, 32, 5000, time.FixedZone("", 7200)),
		},
		{name: "nanoseconds", in: time.Date(2020, 11, 20, 7, 42, 32, 123456789, time.UTC)},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			original := job.NewTime(tt.in)
			b, err := json.Marshal(original)
			require.NoError(t, err)

			var back job.Time
			require.NoError(t, json.Unmarshal(b, &back))

			assert.True(t, original.Equal(back.Time), "got %v, want %v", back.Time, original.Time)
			assert.Equal(t, time.UTC, back.Location())

			again, err := json.Marshal(back)
			require.NoError(t, err)
			assert.Equal(t, string(b), string(again))
		})
	}
}

func TestTimeUnmarshalsAnyRFC3339FormAsUTC(t *testing.T) {
	t.Parallel()

	want := time.Date(2020, 11, 20, 7, 42, 32, 783796000, time.UTC)
	tests := map[string]string{
		"document form": `"2020-11-20T07:42:32.783796Z"`,
		"offset":        `"2020-11-20T09:42:32.783796+02:00"`,
		"seven digits":  `"2020-11-20T07:42:32.7837960Z"`,
	}

	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()

			var got job.Time
			require.NoError(t, json.Unmarshal([]byte(in), &got))

			assert.True(t, want.Equal(got.Time), "got %v", got.Time)
			assert.Equal(t, time.UTC, got.Location())
		})
	}
}

func TestTimeUnmarshalRejectsNonTimestamps(t *testing.T) {
	t.Parallel()

	for _, in := range []string{`123`, `"yesterday"`, `"2020-11-20"`, `{}`} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()

			var got job.Time
			assert.Error(t, json.Unmarshal([]byte(in), &got))
		})
	}
}

func TestNewJobDocumentHasEveryField(t *testing.T) {
	t.Parallel()

	created := time.Date(2020, 11, 20, 8, 42, 32, 783796123, time.FixedZone("CET", 3600))
	doc := job.New(job.NewJob{Hash: "h1", DsID: "ds-1", FileName: "upload.csv"}, created)

	b, err := json.Marshal(doc)
	require.NoError(t, err)

	assert.JSONEq(t, `{
		"ds_id": "ds-1",
		"init_sources": [{"init_source": "upload.csv"}],
		"status": "pending",
		"stages": {},
		"pipeline_id": null,
		"created": "2020-11-20T07:42:32.783796Z",
		"ds_platform_id": null,
		"ds_platform_type_id": null
	}`, string(b))

	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &fields))
	assert.NotContains(t, fields, "reason")
	assert.Equal(t, "{}", string(fields["stages"]))
	assert.Equal(t, "null", string(fields["pipeline_id"]))
}

func TestJobDocumentShowsReasonWhenSet(t *testing.T) {
	t.Parallel()

	doc := job.New(job.NewJob{Hash: "h1", DsID: "ds-1", FileName: "upload.csv"}, time.Now())
	doc.Status = job.StatusFailed
	doc.Reason = "pipeline cannot be fetched"

	b, err := json.Marshal(doc)
	require.NoError(t, err)

	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &fields))
	assert.JSONEq(t, `"pipeline cannot be fetched"`, string(fields["reason"]))
	assert.JSONEq(t, `"failed"`, string(fields["status"]))
}

func TestJobDocumentRoundTripsThroughJSON(t *testing.T) {
	t.Parallel()

	pipelineID, platformID, platformTypeID := "p-1", "plat-1", "type-1"
	doc := job.New(job.NewJob{Hash: "h1", DsID: "ds-1", FileName: "upload.csv"},
		time.Date(2020, 11, 20, 7, 42, 32, 783796000, time.UTC))
	doc.Status = job.StatusRunning
	doc.PipelineID = &pipelineID
	doc.DsPlatformID = &platformID
	doc.DsPlatformTypeID = &platformTypeID
	doc.Stages["0"] = job.Stage{
		Inputs:    []json.RawMessage{json.RawMessage(`{"file":"upload.csv"}`)},
		Outputs:   []json.RawMessage{json.RawMessage(`{"big":1234567890123456789,"n":"6693"}`)},
		Started:   job.NewTime(time.Date(2020, 11, 20, 7, 43, 0, 0, time.UTC)),
		Completed: job.NewTime(time.Date(2020, 11, 20, 7, 44, 0, 1000, time.UTC)),
	}

	b, err := json.Marshal(doc)
	require.NoError(t, err)

	var back job.Job
	require.NoError(t, json.Unmarshal(b, &back))

	again, err := json.Marshal(back)
	require.NoError(t, err)
	assert.Equal(t, string(b), string(again))
	assert.Contains(t, string(b), `"completed":"2020-11-20T07:44:00.000001Z"`)
	assert.Contains(t, string(b), `1234567890123456789`)
}
