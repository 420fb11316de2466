package local_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/examples/sample/energy"
	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/local"
	"github.com/industrial-data/jobmanager/internal/servicetest"
	"github.com/industrial-data/jobmanager/internal/testdb"
)

func TestMain(m *testing.M) {
	testdb.Main(m)
}

// service is the job manager with the file registry and the local
// launcher, as `make run` starts it.
type service struct {
	t     *testing.T
	url   string
	cache string
}

// setup builds the example workers, lays out the platform file as the
// repository has it, and starts the service on a fresh database.
func setup(t *testing.T, extraWorkers map[string][]string) *service {
	t.Helper()

	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"./examples/xlsx-to-csv", "./examples/trim", "./examples/split")
	build.Dir = filepath.Join("..", "..")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "platform.json"))
	require.NoError(t, err)

	var file map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &file))

	var workers map[string]local.Program
	require.NoError(t, json.Unmarshal(file["workers"], &workers))
	for image, command := range extraWorkers {
		workers[image] = local.Program{Command: command}
	}

	file["workers"], err = json.Marshal(workers)
	require.NoError(t, err)

	platformFile := filepath.Join(root, "examples", "platform.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(platformFile), 0o755))
	raw, err = json.Marshal(file)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(platformFile, raw, 0o600))

	pf, err := local.Load(platformFile)
	require.NoError(t, err)

	cache := filepath.Join(root, "cache")
	require.NoError(t, os.Mkdir(cache, 0o755))

	launcher := local.NewLauncher(pf, cache, []string{"PATH=" + os.Getenv("PATH")})
	t.Cleanup(launcher.Close)

	svc := servicetest.Start(t, servicetest.Options{
		Registry:  local.NewRegistry(pf),
		Launcher:  launcher,
		Check:     100 * time.Millisecond,
		DataCache: cache,
		KeepFiles: true,
	})

	return &service{t: t, url: svc.URL, cache: cache}
}

func (s *service) submit(dsID, file string) string {
	s.t.Helper()

	body := `{"hash":"` + file + `","ds_id":"` + dsID + `","file_name":"` + file + `"}`
	resp, err := http.Post(s.url+"/jobs", "application/json", strings.NewReader(body))
	require.NoError(s.t, err)
	defer resp.Body.Close()

	id, _ := io.ReadAll(resp.Body)
	require.Equal(s.t, http.StatusOK, resp.StatusCode, string(id))

	return string(id)
}

func (s *service) ended(id string) job.Job {
	s.t.Helper()

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.url + "/history/" + id)
		require.NoError(s.t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()

		if resp.StatusCode == http.StatusOK {
			var doc job.Job
			require.NoError(s.t, json.Unmarshal(body, &doc))
			return doc
		}

		require.True(s.t, time.Now().Before(deadline), "job %s did not end", id)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSampleRunsThroughTheExampleWorkers(t *testing.T) {
	t.Parallel()
	s := setup(t, nil)

	const minutes = 40
	var book bytes.Buffer
	require.NoError(t, energy.Write(&book, minutes, 7))
	require.NoError(t, os.WriteFile(filepath.Join(s.cache, "energy.xlsx"), book.Bytes(), 0o600))

	doc := s.ended(s.submit("energy-demo", "energy.xlsx"))

	require.Equal(t, job.StatusFinished, doc.Status, doc.Reason)
	require.Len(t, doc.Stages, 3)

	var first map[string]any
	require.NoError(t, json.Unmarshal(doc.Stages["0"].Outputs[0], &first))
	assert.EqualValues(t, minutes*len(energy.Sensors), first["line_count"])
	assert.Contains(t, doc.Stages["0"].Log, "output:")

	tables := doc.Stages["2"].Outputs
	require.Len(t, tables, len(energy.Sensors))
	for i, raw := range tables {
		var out struct {
			UniqueID    string `json:"unique_id"`
			ResultTable string `json:"result_table"`
			LineCount   string `json:"line_count"`
		}
		require.NoError(t, json.Unmarshal(raw, &out))
		assert.Equal(t, energy.Sensors[i], out.UniqueID)
		assert.Equal(t, strconv.Itoa(minutes), out.LineCount)

		f, err := os.Open(filepath.Join(s.cache, out.ResultTable))
		require.NoError(t, err, "one CSV per sensor stays in the data cache")
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		require.NoError(t, err)
		assert.Equal(t, []string{"timestamp", "sensor", "value"}, rows[0], "trim dropped the unit")
		assert.Len(t, rows, minutes+1)
		assert.Equal(t, energy.Sensors[i], rows[1][1])
	}
}

func TestAWorkerThatQuitsWithoutResultFailsTheJob(t *testing.T) {
	t.Parallel()
	s := setup(t, map[string][]string{"examples/xlsx-to-csv": {"/bin/sh", "-c", "echo giving up; exit 3"}})

	doc := s.ended(s.submit("energy-demo", "missing.xlsx"))

	assert.Equal(t, job.StatusFailed, doc.Status)
	assert.Contains(t, doc.Reason, "stopped without results")
	assert.Contains(t, doc.Stages["0"].Log, "giving up", "what the worker wrote is kept")
}

func TestAbortKillsTheWorkersWholeProcessGroup(t *testing.T) {
	t.Parallel()
	script := `sleep 300 & echo $! > "$DATA_CACHE_PATH/child.pid"; echo $$ > "$DATA_CACHE_PATH/worker.pid"; wait`
	s := setup(t, map[string][]string{"examples/xlsx-to-csv": {"/bin/sh", "-c", script}})

	id := s.submit("energy-demo", "energy.xlsx")

	var pids []int
	require.Eventually(t, func() bool {
		pids = pids[:0]
		for _, name := range []string{"worker.pid", "child.pid"} {
			b, err := os.ReadFile(filepath.Join(s.cache, name))
			if err != nil {
				return false
			}

			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				return false
			}

			pids = append(pids, pid)
		}

		return true
	}, 30*time.Second, 10*time.Millisecond)

	resp, err := http.Post(s.url+"/jobs/"+id, "application/json", strings.NewReader(`{"status":"aborted"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, job.StatusAborted, s.ended(id).Status)

	for _, pid := range pids {
		assert.Eventually(t, func() bool {
			return syscall.Kill(pid, 0) != nil
		}, 10*time.Second, 10*time.Millisecond, "process %d still runs", pid)
	}
}
