package job_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
)

func TestParseNewJobAcceptsObjectWithNonEmptyStrings(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		body string
		want job.NewJob
	}{
		{
			name: "exact fields",
			body: `{"hash":"h1","ds_id":"ds-1","file_name":"upload.csv"}`,
			want: job.NewJob{Hash: "h1", DsID: "ds-1", FileName: "upload.csv"},
		},
		{
			name: "extra fields ignored",
			body: `{"hash":"h1","ds_id":"ds-1","file_name":"upload.csv",` +
				`"size":12,"tags":["a"],"meta":{"x":null},"note":null}`,
			want: job.NewJob{Hash: "h1", DsID: "ds-1", FileName: "upload.csv"},
		},
		{
			name: "white space around and inside",
			body: "\n\t {\r\n \"file_name\" : \"upload.csv\" ," +
				"\"ds_id\":\"ds-1\", \"hash\":\"h1\" }\n",
			want: job.NewJob{Hash: "h1", DsID: "ds-1", FileName: "upload.csv"},
		},
		{
			name: "escapes and non-ASCII decoded",
			body: `{"hash":"h\"1","ds_id":"quelle-\u00e4","file_name":"данные.csv"}`,
			want: job.NewJob{Hash: `h"1`, DsID: "quelle-ä", FileName: "данные.csv"},
		},
		{
			name: "escaped backslash before u0000 is no NUL",
			body: `{"hash":"a\\u0000b","ds_id":"ds-1","file_name":"upload.csv"}`,
			want: job.NewJob{Hash: `a\u0000b`, DsID: "ds-1", FileName: "upload.csv"},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := job.ParseNewJob([]byte(tt.body))

			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, job.ID(tt.want.DsID, tt.want.Hash), got.ID())
		})
	}
}

func TestParseNewJobRejectsBadBodyAsInvalid(t *testing.T) {
	t.Parallel()

	const rest = `"ds_id":"ds-1","file_name":"upload.csv"`
	tests := []struct {
		name string
		body string
	}{
		{name: "empty body", body: ``},
		{name: "only white space", body: " \n\t"},
		{name: "not JSON", body: `hash=h1&ds_id=ds-1`},
		{name: "truncated object", body: `{"hash":"h1",` + rest},
		{name: "array", body: `[{"hash":"h1",` + rest + `}]`},
		{name: "null", body: `null`},
		{name: "string", body: `"h1"`},
		{name: "number", body: `42`},
		{name: "boolean", body: `true`},
		{name: "empty object", body: `{}`},
		{name: "missing hash", body: `{` + rest + `}`},
		{name: "missing ds_id", body: `{"hash":"h1","file_name":"upload.csv"}`},
		{name: "missing file_name", body: `{"hash":"h1","ds_id":"ds-1"}`},
		{name: "empty hash", body: `{"hash":"",` + rest + `}`},
		{name: "empty ds_id", body: `{"hash":"h1","ds_id":"","file_name":"upload.csv"}`},
		{name: "empty file_name", body: `{"hash":"h1","ds_id":"ds-1","file_name":""}`},
		{name: "hash number", body: `{"hash":123,` + rest + `}`},
		{name: "hash null", body: `{"hash":null,` + rest + `}`},
		{name: "hash object", body: `{"hash":{"v":"h1"},` + rest + `}`},
		{name: "hash list", body: `{"hash":["h1"],` + rest + `}`},
		{name: "hash boolean", body: `{"hash":true,` + rest + `}`},
		{name: "ds_id number", body: `{"hash":"h1","ds_id":7,"file_name":"upload.csv"}`},
		{name: "ds_id null", body: `{"hash":"h1","ds_id":null,"file_name":"upload.csv"}`},
		{name: "file_name object", body: `{"hash":"h1","ds_id":"ds-1","file_name":{}}`},
		{name: "file_name null", body: `{"hash":"h1","ds_id":"ds-1","file_name":null}`},
		{name: "invalid UTF-8 in value", body: "{\"hash\":\"h\xff1\"," + rest + "}"},
		{name: "invalid UTF-8 in key", body: "{\"hash\":\"h1\",\"\xc3\":1," + rest + "}"},
		{name: "escaped NUL in value", body: `{"hash":"\u0000",` + rest + `}`},
		{name: "escaped NUL inside value", body: `{"hash":"ab\u0000cd",` + rest + `}`},
		{name: "raw NUL byte in value", body: "{\"hash\":\"h\x001\"," + rest + "}"},
		{name: "trailing garbage", body: `{"hash":"h1",` + rest + `}x`},
		{name: "second object", body: `{"hash":"h1",` + rest + `}{}`},
		{name: "trailing comma", body: `{"hash":"h1",` + rest + `,}`},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := job.ParseNewJob([]byte(tt.body))

			require.ErrorIs(t, err, job.ErrInvalid)
			assert.Equal(t, job.NewJob{}, got)
		})
	}
}

func TestParseCommandReadsAbort(t *testing.T) {
	t.Parallel()

	for _, body := range []string{`{"status":"aborted"}`, " { \"status\" : \"aborted\" }\n"} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()

			got, err := job.ParseCommand([]byte(body))

			require.NoError(t, err)
			assert.True(t, got.Abort)
			assert.Empty(t, got.Results)
		})
	}
}

func TestParseCommandRejectsStatusOtherThanAborted(t *testing.T) {
	t.Parallel()

	for _, body := range []string{
		`{"status":"finished"}`,
		`{"status":"running"}`,
		`{"status":"ABORTED"}`,
		`{"status":"aborted "}`,
		`{"status":""}`,
		`{"status":1}`,
		`{"status":true}`,
		`{"status":null}`,
		`{"status":["aborted"]}`,
		`{"status":{"value":"aborted"}}`,
		`{"status":"aborted","extra":"x"}`,
	} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()

			got, err := job.ParseCommand([]byte(body))

			require.ErrorIs(t, err, job.ErrInvalid)
			assert.False(t, got.Abort)
		})
	}
}

func TestParseCommandReadsResults(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		body string
		want map[string][]string
	}{
		{
			name: "list of outputs",
			body: `{"inst-1":[{"table":"a.csv","line_count":"6693"},{"table":"b.csv"}]}`,
			want: map[string][]string{
				"inst-1": {`{"table":"a.csv","line_count":"6693"}`, `{"table":"b.csv"}`},
			},
		},
		{
			name: "single output is a list of one",
			body: `{"inst-1":{"table":"a.csv"}}`,
			want: map[string][]string{"inst-1": {`{"table":"a.csv"}`}},
		},
		{
			name: "several instances",
			body: `{"inst-1":[{"table":"a.csv"}],"inst-2":{"table":"b.csv"},` +
				`"inst-3":[{},{"n":1}]}`,
			want: map[string][]string{
				"inst-1": {`{"table":"a.csv"}`},
				"inst-2": {`{"table":"b.csv"}`},
				"inst-3": {`{}`, `{"n":1}`},
			},
		},
		{
			name: "empty output object",
			body: `{"inst-1":{}}`,
			want: map[string][]string{"inst-1": {`{}`}},
		},
		{
			// An empty result list is a valid request; the job fails on it.
			name: "empty list",
			body: `{"inst-1":[]}`,
			want: map[string][]string{"inst-1": {}},
		},
		{
			name: "white space around values",
			body: "{ \"inst-1\" : [ { \"a\" : 1 } , {\"b\":[2]} ] }",
			want: map[string][]string{"inst-1": {`{"a":1}`, `{"b":[2]}`}},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := job.ParseCommand([]byte(tt.body))

			require.NoError(t, err)
			assert.False(t, got.Abort)
			require.Len(t, got.Results, len(tt.want))

			for instance, want := range tt.want {
				outputs, ok := got.Results[instance]
				require.True(t, ok, "no result for %s", instance)
				require.Len(t, outputs, len(want), instance)

				for i := range want {
					assert.JSONEq(t, want[i], string(outputs[i]), "%s output %d", instance, i)
				}
			}
		})
	}
}

func TestParseCommandKeepsOutputValuesExactly(t *testing.T) {
	t.Parallel()

	const output = `{"line_count":"6693","n":123726,"big":1234567890123456789,` +
		`"neg":-0.000120,"exp":1E+400,"s":"a<b&c\u00e9"}`
	wantValues := map[string]string{
		"line_count": `"6693"`,
		"n":          `123726`,
		"big":        `1234567890123456789`,
		"neg":        `-0.000120`,
		"exp":        `1E+400`,
		"s":          `"a<b&c\u00e9"`,
	}

	tests := map[string]string{
		"in a list":      `{"inst-1":[` + output + `]}`,
		"single output":  `{"inst-1":` + output + `}`,
		"second in list": `{"inst-1":[{"first":true},` + output + `]}`,
	}

	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()

			got, err := job.ParseCommand([]byte(body))
			require.NoError(t, err)

			outputs := got.Results["inst-1"]
			require.NotEmpty(t, outputs)

			last := outputs[len(outputs)-1]
			assert.Equal(t, output, string(last))

			var values map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(last, &values))
			require.Len(t, values, len(wantValues))

			for key, want := range wantValues {
				assert.Equal(t, want, string(values[key]), key)
			}
		})
	}
}

func TestParseCommandRejectsBadBodyAsInvalid(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		body string
	}{
		{name: "empty body", body: ``},
		{name: "not JSON", body: `result`},
		{name: "array", body: `[{"inst-1":{}}]`},
		{name: "null", body: `null`},
		{name: "string", body: `"aborted"`},
		{name: "number", body: `1`},
		{name: "empty object", body: `{}`},
		{name: "result string", body: `{"inst-1":"a.csv"}`},
		{name: "result number", body: `{"inst-1":42}`},
		{name: "result null", body: `{"inst-1":null}`},
		{name: "result boolean", body: `{"inst-1":false}`},
		{name: "list of strings", body: `{"inst-1":["a.csv"]}`},
		{name: "list of numbers", body: `{"inst-1":[1,2]}`},
		{name: "list holding null", body: `{"inst-1":[null]}`},
		{name: "list of lists", body: `{"inst-1":[[{"a":1}]]}`},
		{name: "object then non-object", body: `{"inst-1":[{"a":1},"b"]}`},
		{name: "one good one bad instance", body: `{"inst-1":[{"a":1}],"inst-2":"x"}`},
		{name: "empty instance id", body: `{"":[{"a":1}]}`},
		{name: "invalid UTF-8", body: "{\"inst-1\":[{\"a\":\"\xfe\"}]}"},
		{name: "escaped NUL in output", body: `{"inst-1":[{"a":"x\u0000"}]}`},
		{name: "escaped NUL in output key", body: `{"inst-1":{"\u0000":1}}`},
		{name: "escaped NUL in instance id", body: `{"inst\u0000":{"a":1}}`},
		{name: "trailing garbage", body: `{"inst-1":{"a":1}} x`},
		{name: "second object", body: `{"inst-1":{"a":1}}{}`},
		{name: "truncated", body: `{"inst-1":[{"a":1}`},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := job.ParseCommand([]byte(tt.body))

			require.ErrorIs(t, err, job.ErrInvalid)
			assert.Equal(t, job.Command{}, got)
		})
	}
}

// PostgreSQL refuses a \u escape of a lone UTF-16 surrogate in jsonb
// ("Unicode low surrogate must follow a high surrogate"), just as it refuses
// \u0000. Results are stored as the worker sent them, so such a body has to
// be refused here as a client mistake rather than reach the database and
// fail there as a server error.
func TestParseCommandRejectsLoneSurrogateEscapes(t *testing.T) {
	t.Parallel()

	for _, body := range []string{
		`{"inst-1":[{"a":"\ud800"}]}`,
		`{"inst-1":{"a":"x\udc00y"}}`,
		`{"inst-1":{"\ud83d":1}}`,
		`{"inst-1":[{"a":["\uDFFF"]}]}`,
	} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()

			_, err := job.ParseCommand([]byte(body))

			require.ErrorIs(t, err, job.ErrInvalid)
		})
	}
}

func TestParseCommandAcceptsSurrogatePairEscapes(t *testing.T) {
	t.Parallel()

	got, err := job.ParseCommand([]byte(`{"inst-1":{"a":"\ud83d\ude00"}}`))

	require.NoError(t, err)
	assert.Equal(t, `{"a":"\ud83d\ude00"}`, string(got.Results["inst-1"][0]))
}

func TestParseCommandRefusesNumbersThatWriteOutTooLong(t *testing.T) {
	t.Parallel()

	for _, n := range []string{"1e999999", "1e1000", "-1e200000", "1e-1001", "0.5e-1000",
		"1e99999999999999999999", strings.Repeat("9", job.MaxNumberDigits+1)} {
		_, err := job.ParseCommand([]byte(`{"i":[{"v":` + n + `}]}`))
		assert.ErrorIs(t, err, job.ErrInvalid, "%.30s", n)
	}

	for _, n := range []string{"1e999", "1e-1000", "1e400", "123726", "-0.5e3",
		"1234567890123456789", strings.Repeat("9", job.MaxNumberDigits)} {
		_, err := job.ParseCommand([]byte(`{"i":[{"v":` + n + `}]}`))
		assert.NoError(t, err, "%.30s", n)
	}
}

func TestParseCommandBoundsTheResultsOfOnePost(t *testing.T) {
	t.Parallel()

	var b strings.Builder
	b.WriteString("{")
	for i := range job.MaxResultsPerPost + 1 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"i%d":{"v":1}`, i)
	}
	b.WriteString("}")

	_, err := job.ParseCommand([]byte(b.String()))
	assert.ErrorIs(t, err, job.ErrInvalid)
}

func TestParseNewJobRefusesLoneSurrogatesRatherThanRewritingThem(t *testing.T) {
	t.Parallel()

	for _, body := range []string{
		`{"hash":"\ud800","ds_id":"d","file_name":"f"}`,
		`{"hash":"h","ds_id":"\udfff","file_name":"f"}`,
		`{"hash":"h","ds_id":"d","file_name":"x\ud83d"}`,
	} {
		_, err := job.ParseNewJob([]byte(body))
		assert.ErrorIs(t, err, job.ErrInvalid, body)
	}

	req, err := job.ParseNewJob([]byte(`{"hash":"\ud83d\ude00","ds_id":"d","file_name":"f"}`))
	require.NoError(t, err)
	assert.Equal(t, "😀", req.Hash)
}

func TestParseNewJobBoundsEachField(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", job.MaxFieldBytes+1)

	for _, field := range []string{"hash", "ds_id", "file_name"} {
		fields := map[string]string{"hash": "h", "ds_id": "d", "file_name": "f"}
		fields[field] = long
		body, err := json.Marshal(fields)
		require.NoError(t, err)

		_, err = job.ParseNewJob(body)
		assert.ErrorIs(t, err, job.ErrInvalid, field)
	}

	_, err := job.ParseNewJob([]byte(`{"hash":"` + long[1:] + `","ds_id":"d","file_name":"f"}`))
	assert.NoError(t, err, "exactly the limit is accepted")
}
