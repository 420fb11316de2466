package engine_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/platformtest"
)

func TestAbortEndsPendingAndRunningJobsAndStopsTheirWorkers(t *testing.T) {
	t.Parallel()
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		switch {
		case r.Image == image("split"):
			return platformtest.Plan{Outputs: parts(3)}
		case r.Input("source_table") == partName(0):
			return platformtest.Plan{Outputs: []map[string]any{{"loaded": partName(0)}}}
		default:
			return platformtest.Plan{}
		}
	}, options{maxJobs: 1, stageWorkers: 3})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", splitPipeline("single"))

	running := s.submit("ds", "running", "upload.xlsx")
	s.awaitInstances(image("load"), 3)
	s.eventually(func() bool {
		return s.count(`SELECT count(*) FROM workers WHERE job_id = $1 AND stage = 1 AND state = 'done'`,
			running) == 1
	}, "the first load worker to be done")

	s.eventually(func() bool {
		return s.count(`SELECT count(*) FROM workers WHERE job_id = $1 AND stage = 1 AND state = 'running'`,
			running) == 2
	}, "the other two load workers to run")

	pending := s.submit("ds", "pending", "other.xlsx")
	require.Equal(t, job.StatusPending, s.active(pending).Status, "the only slot is taken")

	status, body := s.abort(pending)
	require.Equal(t, http.StatusOK, status, body)

	doc := s.ended(pending)
	assert.Equal(t, job.StatusAborted, doc.Status)
	assert.Nil(t, doc.PipelineID, "a pending job was never resolved")
	assert.Empty(t, doc.Stages)

	status, body = s.abort(running)
	require.Equal(t, http.StatusOK, status, body)

	doc = s.ended(running)
	assert.Equal(t, job.StatusAborted, doc.Status)
	require.Contains(t, doc.Stages, "0", "the completed stage is kept")
	assert.Len(t, doc.Stages["0"].Outputs, 3)
	require.Contains(t, doc.Stages, "1", "the aborted stage is kept with what it had")
	assert.Len(t, doc.Stages["1"].Inputs, 3)
	assert.Equal(t, quoted(partName(0)), field(t, doc.Stages["1"].Outputs, "loaded"))
	for _, inst := range s.instances(image("load")) {
		assert.Contains(t, doc.Stages["1"].Log, inst.ID+" ", "every load worker's log is kept")
	}

	for _, inst := range s.platform.Instances() {
		s.eventually(inst.Removed, "instance %s to be removed", inst.ID)
	}

	status, _ = s.get("/jobs/" + running)
	assert.Equal(t, http.StatusNotFound, status)
	status, _ = s.abort(running)
	assert.Equal(t, http.StatusConflict, status, "a job ends once")
	assert.Len(t, s.platform.Instances(), 4, "the aborted pending job never started a worker")
}

func TestLateResultAfterAbortIsRefusedAndChangesNothing(t *testing.T) {
	t.Parallel()
	s := setup(t, holdWorkers, options{})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", holdPipeline())

	id := s.submit("ds", "h", "upload.xlsx")
	inst := s.instanceOf(id)
	s.awaitRunning(id, inst.ID)

	status, body := s.abort(id)
	require.Equal(t, http.StatusOK, status, body)
	s.ended(id)
	before := s.historyJSON(id)

	status, body = s.report(id, inst.ID, map[string]any{"held": "late"})
	assert.Equal(t, http.StatusConflict, status, body)
	status, body = s.report(id, "never-started", map[string]any{"held": "late"})
	assert.Equal(t, http.StatusConflict, status, body)

	assert.Equal(t, string(before), string(s.historyJSON(id)))
	assert.Equal(t, 1, s.count(`SELECT count(*) FROM history WHERE id = $1`, id))
	assert.NotContains(t, string(before), "late")
}

func TestResultRacingAnAbortIsAppliedExactlyOnce(t *testing.T) {
	t.Parallel()
	const runs = 50
	s := setup(t, holdWorkers, options{maxJobs: runs})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", holdPipeline())

	ids := make([]string, runs)
	insts := make([]*platformtest.Instance, runs)
	for i := range runs {
		ids[i] = s.submit("ds", fmt.Sprintf("race-%d", i), "upload.xlsx")
	}

	for i, id := range ids {
		insts[i] = s.instanceOf(id)
		s.awaitRunning(id, insts[i].ID)
	}

	type answers struct {
		result, abort int
		errs          [2]error
	}
	got := make([]answers, runs)
	for i, id := range ids {
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			url   = s.url + "/jobs/" + id
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			got[i].result, got[i].errs[0] = postStatus(url, fmt.Sprintf(`{%q:[{"held":%d}]}`, insts[i].ID, i))
		}()
		go func() {
			defer wg.Done()
			<-start
			got[i].abort, got[i].errs[1] = postStatus(url, `{"status":"aborted"}`)
		}()
		close(start)
		wg.Wait()
	}

	outcomes := map[string]int{}
	for i, id := range ids {
		a := got[i]
		require.NoError(t, a.errs[0])
		require.NoError(t, a.errs[1])
		require.Contains(t, []int{http.StatusOK, http.StatusConflict}, a.result, "result answer of run %d", i)
		require.Contains(t, []int{http.StatusOK, http.StatusConflict}, a.abort, "abort answer of run %d", i)

		doc := s.ended(id)
		require.Equal(t, 1, s.count(`SELECT count(*) FROM history WHERE id = $1`, id), "run %d ends once", i)

		held := field(t, doc.Stages["0"].Outputs, "held")
		switch doc.Status {
		case job.StatusFinished:
			require.Equal(t, http.StatusOK, a.result, "run %d finished without its result", i)
			require.Equal(t, http.StatusConflict, a.abort, "run %d finished and was aborted", i)
		case job.StatusAborted:
			require.Equal(t, http.StatusOK, a.abort, "run %d", i)
		default:
			t.Fatalf("run %d ended %s: %s", i, doc.Status, doc.Reason)
		}

		if a.result == http.StatusOK {
			require.Equal(t, []string{fmt.Sprint(i)}, held, "run %d keeps its accepted result once", i)
		} else {
			require.Empty(t, held, "run %d keeps a refused result", i)
		}

		outcomes[fmt.Sprintf("%s, result %d", doc.Status, a.result)]++
	}

	for _, inst := range insts {
		s.eventually(inst.Removed, "instance %s to be removed", inst.ID)
	}

	t.Logf("outcomes of %d races: %v", runs, outcomes)
}
