package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/api"
	"github.com/industrial-data/jobmanager/internal/engine"
	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/store"
	"github.com/industrial-data/jobmanager/internal/testdb"
)

const maxBody = 4096

// service is the API on a fresh database. Its engine does not run, so
// submitted jobs stay pending.
type service struct {
	t    *testing.T
	url  string
	pool *pgxpool.Pool
}

func setup(t *testing.T) *service {
	t.Helper()

	pool := testdb.Pool(t)
	st := store.New(pool)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	eng := engine.New(st, nil, nil, logger, engine.Options{MaxJobs: 2})

	srv := httptest.NewServer(api.New(eng, logger, api.Options{
		MaxBodyBytes: maxBody,
		Ready:        pool.Ping,
	}))
	t.Cleanup(srv.Close)

	return &service{t: t, url: srv.URL, pool: pool}
}

type answer struct {
	status int
	body   string
}

func (s *service) do(method, path, contentType, body string) answer {
	s.t.Helper()

	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	require.NoError(s.t, err)

	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}

	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()

	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)

	return answer{status: resp.StatusCode, body: string(b)}
}

func (s *service) get(path string) answer {
	s.t.Helper()

	return s.do(http.MethodGet, path, "", "")
}

func (s *service) post(path, body string) answer {
	s.t.Helper()

	return s.do(http.MethodPost, path, "application/json", body)
}

// submit posts a new job and returns its id.
func (s *service) submit(dsID, hash, file string) string {
	s.t.Helper()

	a := s.post("/jobs", newJob(dsID, hash, file))
	require.Equal(s.t, http.StatusOK, a.status, a.body)

	return a.body
}

func newJob(dsID, hash, file string) string {
	b, _ := json.Marshal(map[string]string{"ds_id": dsID, "hash": hash, "file_name": file})

	return string(b)
}

// keys returns the keys of a JSON object in the order the text has them.
func keys(t *testing.T, body string) []string {
	t.Helper()

	dec := json.NewDecoder(strings.NewReader(body))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok, body)

	var ks []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		ks = append(ks, tok.(string))

		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}

	return ks
}

var timestamp = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

func TestListsAreEmptyObjectsWhenThereAreNoJobs(t *testing.T) {
	t.Parallel()
	s := setup(t)

	for _, path := range []string{"/jobs", "/history"} {
		a := s.get(path)
		assert.Equal(t, http.StatusOK, a.status, path)
		assert.JSONEq(t, `{}`, a.body, path)
	}
}

func TestSubmitAnswersTheIDAsText(t *testing.T) {
	t.Parallel()
	s := setup(t)

	a := s.post("/jobs", newJob("098z0g976gf76ftfj", "502a515f", "51613626e8f342bb810d4ce0aaee4ca3"))

	require.Equal(t, http.StatusOK, a.status)
	assert.Equal(t, job.ID("098z0g976gf76ftfj", "502a515f"), a.body)
	assert.Len(t, a.body, 22)
}

func TestNewJobHasEveryFieldWithNullsUntilResolved(t *testing.T) {
	t.Parallel()
	s := setup(t)
	id := s.submit("098z0g976gf76ftfj", "abc", "5c3759fed6c241db8728219cd650d9f1")

	for _, a := range []answer{s.get("/jobs/" + id), s.get("/jobs")} {
		require.Equal(t, http.StatusOK, a.status)

		var doc map[string]any
		require.NoError(t, json.Unmarshal([]byte(a.body), &doc))
		if _, listed := doc[id]; listed {
			doc = doc[id].(map[string]any)
		}

		assert.Equal(t, "098z0g976gf76ftfj", doc["ds_id"])
		assert.Equal(t, []any{map[string]any{"init_source": "5c3759fed6c241db8728219cd650d9f1"}},
			doc["init_sources"])
		assert.Equal(t, "pending", doc["status"])
		assert.Equal(t, map[string]any{}, doc["stages"])
		assert.Regexp(t, timestamp, doc["created"])
		for _, field := range []string{"pipeline_id", "ds_platform_id", "ds_platform_type_id"} {
			v, present := doc[field]
			assert.True(t, present, field)
			assert.Nil(t, v, field)
		}
	}
}

func TestSubmitOfAnActiveJobIsAConflictNamingIt(t *testing.T) {
	t.Parallel()
	s := setup(t)
	id := s.submit("ds", "h", "f")

	a := s.post("/jobs", newJob("ds", "h", "other-file"))

	assert.Equal(t, http.StatusConflict, a.status)
	assert.Equal(t, id, a.body)
	assert.Len(t, keys(t, s.get("/jobs").body), 1)
}

func TestConcurrentIdenticalSubmitsCreateOneJob(t *testing.T) {
	t.Parallel()
	s := setup(t)

	const n = 20
	statuses := make([]int, n)
	bodies := make([]string, n)
	start := make(chan struct{})

	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start

			resp, err := http.Post(s.url+"/jobs", "application/json",
				strings.NewReader(newJob("ds", "same", "f")))
			if err != nil {
				return
			}
			defer resp.Body.Close()

			b, _ := io.ReadAll(resp.Body)
			statuses[i], bodies[i] = resp.StatusCode, string(b)
		}()
	}
	close(start)
	wg.Wait()

	count := map[int]int{}
	for i, st := range statuses {
		count[st]++
		assert.Equal(t, job.ID("ds", "same"), bodies[i])
	}

	assert.Equal(t, map[int]int{http.StatusOK: 1, http.StatusConflict: n - 1}, count)
}

func TestSubmitRefusesBadBodiesAndChangesNothing(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.submit("ds", "kept", "f")
	before := s.get("/jobs").body

	for name, body := range map[string]string{
		"not JSON":          `{"hash":`,
		"array":             `[{"hash":"h","ds_id":"d","file_name":"f"}]`,
		"null":              `null`,
		"string":            `"hash"`,
		"empty body":        ``,
		"missing hash":      `{"ds_id":"d","file_name":"f"}`,
		"missing ds_id":     `{"hash":"h","file_name":"f"}`,
		"missing file_name": `{"hash":"h","ds_id":"d"}`,
		"empty hash":        `{"hash":"","ds_id":"d","file_name":"f"}`,
		"number ds_id":      `{"hash":"h","ds_id":7,"file_name":"f"}`,
		"null file_name":    `{"hash":"h","ds_id":"d","file_name":null}`,
		"NUL in a string":   `{"hash":"h","ds_id":"d\u0000","file_name":"f"}`,
		"trailing garbage":  `{"hash":"h","ds_id":"d","file_name":"f"} x`,
		"invalid UTF-8":     "{\"hash\":\"h\xff\",\"ds_id\":\"d\",\"file_name\":\"f\"}",
	} {
		a := s.post("/jobs", body)
		assert.Equal(t, http.StatusBadRequest, a.status, name)
		assert.NotEmpty(t, a.body, name)
	}

	assert.Equal(t, before, s.get("/jobs").body)
}

func TestSubmitAcceptsOnlyJSON(t *testing.T) {
	t.Parallel()
	s := setup(t)
	body := newJob("ds", "h", "f")

	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/jsonx"} {
		a := s.do(http.MethodPost, "/jobs", ct, body)
		assert.Equal(t, http.StatusUnsupportedMediaType, a.status, ct)
	}

	assert.JSONEq(t, `{}`, s.get("/jobs").body)

	a := s.do(http.MethodPost, "/jobs", "application/json; charset=utf-8", body)
	assert.Equal(t, http.StatusOK, a.status)
}

func TestOversizedBodiesAreRefused(t *testing.T) {
	t.Parallel()
	s := setup(t)
	id := s.submit("ds", "h", "f")
	big := `{"hash":"h","ds_id":"d","file_name":"` + strings.Repeat("x", maxBody) + `"}`

	assert.Equal(t, http.StatusRequestEntityTooLarge, s.post("/jobs", big).status)
	assert.Equal(t, http.StatusRequestEntityTooLarge, s.post("/jobs/"+id, big).status)

	// Without a declared length the limit still holds.
	req, err := http.NewRequest(http.MethodPost, s.url+"/jobs", io.MultiReader(strings.NewReader(big)))
	require.NoError(t, err)
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)

	assert.Len(t, keys(t, s.get("/jobs").body), 1)
}

func TestUnknownJobsAreNotFound(t *testing.T) {
	t.Parallel()
	s := setup(t)

	assert.Equal(t, http.StatusNotFound, s.get("/jobs/MA2uh3-yxrJT0eaqR4MojQ").status)
	assert.Equal(t, http.StatusNotFound, s.get("/history/MA2uh3-yxrJT0eaqR4MojQ").status)
	assert.Equal(t, http.StatusNotFound, s.post("/jobs/MA2uh3-yxrJT0eaqR4MojQ", `{"status":"aborted"}`).status)
	assert.Equal(t, http.StatusNotFound, s.post("/jobs/MA2uh3-yxrJT0eaqR4MojQ", `{"i":[{"a":1}]}`).status)
}

func TestJobsAreListedOldestFirst(t *testing.T) {
	t.Parallel()
	s := setup(t)

	var ids []string
	for _, h := range []string{"z", "a", "m", "b", "y"} {
		ids = append(ids, s.submit("ds", h, "f"))
	}

	assert.Equal(t, ids, keys(t, s.get("/jobs").body))

	for _, id := range []string{ids[3], ids[0], ids[4]} {
		require.Equal(t, http.StatusOK, s.post("/jobs/"+id, `{"status":"aborted"}`).status)
	}

	assert.Equal(t, []string{ids[0], ids[3], ids[4]}, keys(t, s.get("/history").body))
	assert.Equal(t, []string{ids[1], ids[2]}, keys(t, s.get("/jobs").body))
}

func TestAbortMovesAPendingJobToHistory(t *testing.T) {
	t.Parallel()
	s := setup(t)
	id := s.submit("ds", "h", "f")

	a := s.post("/jobs/"+id, `{"status": "aborted"}`)
	require.Equal(t, http.StatusOK, a.status)

	assert.Equal(t, http.StatusNotFound, s.get("/jobs/"+id).status)
	assert.JSONEq(t, `{}`, s.get("/jobs").body)

	h := s.get("/history/" + id)
	require.Equal(t, http.StatusOK, h.status)

	var doc job.Job
	require.NoError(t, json.Unmarshal([]byte(h.body), &doc))
	assert.Equal(t, job.StatusAborted, doc.Status)
	assert.Equal(t, []string{id}, keys(t, s.get("/history").body))
}

func TestCommandsToAnEndedJobAreConflicts(t *testing.T) {
	t.Parallel()
	s := setup(t)
	id := s.submit("ds", "h", "f")
	require.Equal(t, http.StatusOK, s.post("/jobs/"+id, `{"status":"aborted"}`).status)
	before := s.get("/history/" + id).body

	assert.Equal(t, http.StatusConflict, s.post("/jobs/"+id, `{"status":"aborted"}`).status)
	assert.Equal(t, http.StatusConflict, s.post("/jobs/"+id, `{"inst":[{"csv_file":"x"}]}`).status)
	assert.Equal(t, before, s.get("/history/"+id).body)
}

func TestCommandRefusesBadBodiesAndChangesNothing(t *testing.T) {
	t.Parallel()
	s := setup(t)
	id := s.submit("ds", "h", "f")
	before := s.get("/jobs/" + id).body

	for name, body := range map[string]string{
		"array":              `[{"status":"aborted"}]`,
		"null":               `null`,
		"string":             `"aborted"`,
		"not JSON":           `{"status":`,
		"other status":       `{"status":"finished"}`,
		"status not string":  `{"status":1}`,
		"empty object":       `{}`,
		"result string":      `{"inst":"done"}`,
		"result number":      `{"inst":5}`,
		"result null":        `{"inst":null}`,
		"result list of str": `{"inst":["a"]}`,
		"result NUL":         `{"inst":[{"a":"\u0000"}]}`,
	} {
		a := s.post("/jobs/"+id, body)
		assert.Equal(t, http.StatusBadRequest, a.status, name)
	}

	assert.Equal(t, http.StatusUnsupportedMediaType,
		s.do(http.MethodPost, "/jobs/"+id, "text/plain", `{"status":"aborted"}`).status)
	assert.Equal(t, before, s.get("/jobs/"+id).body)
}

func TestResultsForAPendingJobAreKept(t *testing.T) {
	t.Parallel()
	s := setup(t)
	id := s.submit("ds", "h", "f")

	a := s.post("/jobs/"+id, `{"i1":[{"n":1234567890123456789}],"i2":{"line_count":"6693"}}`)
	require.Equal(t, http.StatusOK, a.status)

	var stored []string
	rows, err := s.pool.Query(context.Background(),
		"SELECT outputs::text FROM results WHERE job_id = $1 ORDER BY instance", id)
	require.NoError(t, err)
	for rows.Next() {
		var o string
		require.NoError(t, rows.Scan(&o))
		stored = append(stored, o)
	}
	require.NoError(t, rows.Err())

	assert.Equal(t, []string{`[{"n": 1234567890123456789}]`, `[{"line_count": "6693"}]`}, stored)
}

func TestAJobInHistoryCanRunAgainAndEveryRunIsKept(t *testing.T) {
	t.Parallel()
	s := setup(t)
	id := s.submit("ds", "h", "first-file")
	require.Equal(t, http.StatusOK, s.post("/jobs/"+id, `{"status":"aborted"}`).status)

	again := s.submit("ds", "h", "second-file")
	require.Equal(t, id, again)
	assert.Equal(t, http.StatusOK, s.get("/jobs/"+id).status)
	require.Equal(t, http.StatusOK, s.post("/jobs/"+id, `{"status":"aborted"}`).status)

	var runs int
	require.NoError(t, s.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM history WHERE id = $1", id).Scan(&runs))
	assert.Equal(t, 2, runs)

	var latest job.Job
	require.NoError(t, json.Unmarshal([]byte(s.get("/history/"+id).body), &latest))
	assert.Equal(t, "second-file", latest.InitSources[0].InitSource)
	assert.Equal(t, []string{id}, keys(t, s.get("/history").body))
}

func TestTrailingSlashesAreAccepted(t *testing.T) {
	t.Parallel()
	s := setup(t)
	a := s.post("/jobs/", newJob("ds", "h", "f"))
	require.Equal(t, http.StatusOK, a.status)
	id := a.body

	assert.Equal(t, http.StatusOK, s.get("/jobs/").status)
	assert.Equal(t, http.StatusOK, s.get("/jobs/"+id+"/").status)
	require.Equal(t, http.StatusOK, s.post("/jobs/"+id+"/", `{"status":"aborted"}`).status)
	assert.Equal(t, http.StatusOK, s.get("/history/").status)
	assert.Equal(t, http.StatusOK, s.get("/history/"+id+"/").status)
}

func TestOtherMethodsAreNotAllowed(t *testing.T) {
	t.Parallel()
	s := setup(t)
	id := s.submit("ds", "h", "f")

	for _, c := range []struct{ method, path string }{
		{http.MethodPut, "/jobs"},
		{http.MethodDelete, "/jobs"},
		{http.MethodPatch, "/jobs/" + id},
		{http.MethodDelete, "/jobs/" + id},
		{http.MethodPost, "/history"},
		{http.MethodDelete, "/history/" + id},
		{http.MethodPut, "/history/" + id + "/"},
	} {
		a := s.do(c.method, c.path, "application/json", `{}`)
		assert.Equal(t, http.StatusMethodNotAllowed, a.status, c.method+" "+c.path)
	}

	assert.Equal(t, http.StatusOK, s.get("/jobs/"+id).status)
}

func TestValuesInDocumentsAreKeptExactly(t *testing.T) {
	t.Parallel()
	s := setup(t)
	dsID := `machine "7" <ü> \ 😀`
	id := s.submit(dsID, "h", "f")

	var doc job.Job
	require.NoError(t, json.Unmarshal([]byte(s.get("/jobs/"+id).body), &doc))
	assert.Equal(t, dsID, doc.DsID)
}

func TestErrorsDoNotLeakInternals(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.pool.Close()

	a := s.get("/jobs")

	assert.Equal(t, http.StatusInternalServerError, a.status)
	assert.Equal(t, "Internal Server Error", a.body)
	assert.Equal(t, http.StatusServiceUnavailable, s.get("/readyz").status)
	assert.Equal(t, http.StatusOK, s.get("/livez").status)
}

func TestProbesAnswer(t *testing.T) {
	t.Parallel()
	s := setup(t)

	for _, path := range []string{"/livez", "/healthz", "/readyz"} {
		assert.Equal(t, http.StatusOK, s.get(path).status, path)
	}
}

func TestIDsNoJobCanHaveAreNotFound(t *testing.T) {
	t.Parallel()
	s := setup(t)

	for _, id := range []string{"a%00b", "a%FFb", "%C0%AF", "short", strings.Repeat("A", 23),
		"MA2uh3-yxrJT0eaqR4Moj%21"} {
		assert.Equal(t, http.StatusNotFound, s.get("/jobs/"+id).status, id)
		assert.Equal(t, http.StatusNotFound, s.get("/history/"+id).status, id)
		assert.Equal(t, http.StatusNotFound, s.post("/jobs/"+id, `{"status":"aborted"}`).status, id)
	}
}

func TestHEADIsAnsweredWhereGETIs(t *testing.T) {
	t.Parallel()
	s := setup(t)
	id := s.submit("ds", "h", "f")

	for _, path := range []string{"/jobs", "/jobs/" + id, "/history", "/livez", "/healthz", "/readyz"} {
		a := s.do(http.MethodHead, path, "", "")
		assert.Equal(t, http.StatusOK, a.status, path)
		assert.Empty(t, a.body, path)
	}

	assert.Equal(t, http.StatusNotFound, s.do(http.MethodHead, "/history/"+id, "", "").status)
}
