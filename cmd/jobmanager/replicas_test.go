package main

// These tests run real processes of the built binary as replicas behind
// no load balancer but the fake platform, which posts each worker's
// result to a replica picked at random, as a load balancer would.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/platformtest"
	"github.com/industrial-data/jobmanager/internal/testdb"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jobmanager-bin-")
	if err != nil {
		panic(err)
	}

	binary = filepath.Join(dir, "jobmanager")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build: %v: %s", err, out))
	}

	testdb.Main(m, func() { os.RemoveAll(dir) })
}

// replica is one running process of the service.
type replica struct {
	url string
	cmd *exec.Cmd
	log string
	env []string
}

// cluster is a set of replicas on one database and a fake platform.
type cluster struct {
	t        *testing.T
	replicas []*replica
	platform *platformtest.Platform
	pool     *pgxpool.Pool
	env      []string
	mu       sync.Mutex
}

// add starts one more replica.
func (c *cluster) add() *replica {
	c.t.Helper()

	r := &replica{log: filepath.Join(c.t.TempDir(), "replica.log"), env: c.env}
	c.start(r)

	c.mu.Lock()
	c.replicas = append(c.replicas, r)
	c.mu.Unlock()

	return r
}

func newCluster(t *testing.T, dbURL string, n int, settings map[string]string) *cluster {
	t.Helper()

	c := &cluster{t: t}
	c.platform = platformtest.New(t, platformtest.ExampleWorkers)
	c.platform.AddDataSource("ds", "p")
	c.platform.SetPipeline("p", platformtest.ExamplePipeline())
	c.platform.Retry = time.Minute
	c.platform.Callback = func(target string) string {
		// The path is the job's callback; the host is any live replica.
		path := target[strings.Index(target, "/jobs/"):]
		return c.pick().url + path
	}

	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	c.pool = pool

	env := os.Environ()
	env = append(env, "DATABASE_URL="+dbURL, "CONF_WORKERCALLBACK_URL=http://callback.invalid",
		"CONF_LOGGER_LEVEL=debug")
	for k, v := range c.platform.Settings() {
		env = append(env, k+"="+v)
	}

	for k, v := range settings {
		env = append(env, k+"="+v)
	}

	c.env = env
	for range n {
		c.add()
	}

	t.Cleanup(func() {
		for _, r := range c.live() {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
		}

		if t.Failed() {
			for _, r := range c.replicas {
				b, _ := os.ReadFile(r.log)
				t.Logf("log of %s:\n%s", r.url, tail(string(b), 4000))
			}
		}
	})

	return c
}

// start starts a replica's process and waits until it is ready.
func (c *cluster) start(r *replica) {
	c.t.Helper()

	port := freePort(c.t)
	r.url = fmt.Sprintf("http://127.0.0.1:%d", port)

	logFile, err := os.OpenFile(r.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(c.t, err)
	defer logFile.Close()

	r.cmd = exec.Command(binary)
	r.cmd.Env = append(append([]string{}, r.env...), fmt.Sprintf("JOBMANAGER_LISTEN_ADDR=127.0.0.1:%d", port))
	r.cmd.Stdout = logFile
	r.cmd.Stderr = logFile
	require.NoError(c.t, r.cmd.Start())

	c.eventually(func() bool { return status(r.url+"/readyz") == http.StatusOK },
		"replica %s to be ready", r.url)
}

// live returns the replicas whose processes run.
func (c *cluster) live() []*replica {
	c.mu.Lock()
	defer c.mu.Unlock()

	var out []*replica
	for _, r := range c.replicas {
		if r.cmd.ProcessState == nil {
			out = append(out, r)
		}
	}

	return out
}

// pick returns a live replica at random; with none left, one whose
// address refuses connections.
func (c *cluster) pick() *replica {
	live := c.live()
	if len(live) == 0 {
		return &replica{url: "http://127.0.0.1:1"}
	}

	return live[rand.IntN(len(live))]
}

// kill stops a replica the hard way, as a lost node would.
func (c *cluster) kill(r *replica) {
	c.t.Helper()

	c.mu.Lock()
	defer c.mu.Unlock()

	require.NoError(c.t, r.cmd.Process.Signal(syscall.SIGKILL))
	_ = r.cmd.Wait()
}

// submit posts a job to a random replica, retrying while none answers.
func (c *cluster) submit(hash string) string {
	c.t.Helper()

	body := `{"hash":"` + hash + `","ds_id":"ds","file_name":"` + hash + `.xlsx"}`
	var id string
	c.eventually(func() bool {
		code, answer := post(c.pick().url+"/jobs", body)
		require.Less(c.t, code, 500, "submit answered %d %s", code, answer)
		id = answer
		return code == http.StatusOK
	}, "job %s to be submitted", hash)

	return id
}

// submitMany submits n jobs and returns their ids.
func (c *cluster) submitMany(prefix string, n int) []string {
	c.t.Helper()

	ids := make([]string, n)
	for i := range n {
		ids[i] = c.submit(fmt.Sprintf("%s%03d", prefix, i))
	}

	return ids
}

// quickRecovery are settings under which a dead replica's work is taken
// over within seconds.
func quickRecovery(maxJobs int) map[string]string {
	return map[string]string{
		"CONF_JOBS_MAX_NUM":        fmt.Sprint(maxJobs),
		"CONF_JOBS_CHECK":          "1",
		"JOBMANAGER_LEASE":         "2s",
		"JOBMANAGER_PEER_TIMEOUT":  "1s",
		"JOBMANAGER_POLL_INTERVAL": "100ms",
	}
}

// slowWorkers report after at least least, and up to spread more, so
// that jobs are caught mid-stage.
func slowWorkers(least, spread time.Duration) func(platformtest.StartRequest) platformtest.Plan {
	return func(r platformtest.StartRequest) platformtest.Plan {
		return platformtest.Plan{
			Outputs: platformtest.ExampleOutputs(r),
			Delay:   least + time.Duration(rand.Int64N(int64(spread))),
		}
	}
}

func (c *cluster) eventually(cond func() bool, what string, args ...any) {
	c.t.Helper()

	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for "+what, args...)
		}

		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cluster) count(query string, args ...any) int {
	c.t.Helper()

	var n int
	require.NoError(c.t, c.pool.QueryRow(context.Background(), query, args...).Scan(&n))

	return n
}

// waitEnded waits until every job has reached history.
func (c *cluster) waitEnded(ids []string) {
	c.t.Helper()

	c.eventually(func() bool {
		var n int
		err := c.pool.QueryRow(context.Background(),
			"SELECT count(DISTINCT id) FROM history WHERE id = ANY($1)", ids).Scan(&n)
		return err == nil && n == len(ids)
	}, "%d jobs to end", len(ids))
}

// history returns the latest document of each job.
func (c *cluster) history(ids []string) map[string]job.Job {
	c.t.Helper()

	rows, err := c.pool.Query(context.Background(),
		"SELECT DISTINCT ON (id) id, doc FROM history WHERE id = ANY($1) ORDER BY id, seq DESC", ids)
	require.NoError(c.t, err)
	defer rows.Close()

	docs := map[string]job.Job{}
	for rows.Next() {
		var (
			id  string
			raw []byte
			doc job.Job
		)
		require.NoError(c.t, rows.Scan(&id, &raw))
		require.NoError(c.t, json.Unmarshal(raw, &doc))
		docs[id] = doc
	}

	require.NoError(c.t, rows.Err())

	return docs
}

// checkFinished checks a job ran the example pipeline once, whole: three
// stages with every output, each worker started once.
func (c *cluster) checkFinished(id string, doc job.Job, starts map[string]int) {
	c.t.Helper()

	require.Equal(c.t, job.StatusFinished, doc.Status, "job %s: %s", id, doc.Reason)
	require.Len(c.t, doc.Stages, 3, id)
	assert.Len(c.t, doc.Stages["0"].Outputs, 1, id)
	assert.Len(c.t, doc.Stages["1"].Outputs, 1, id)
	assert.Len(c.t, doc.Stages["2"].Outputs, len(platformtest.SensorTables), id)
}

// endedPerMetrics adds up jobmanager_jobs_ended_total over the replicas.
func (c *cluster) endedPerMetrics() float64 {
	c.t.Helper()

	var total float64
	for _, r := range c.live() {
		resp, err := http.Get(r.url + "/metrics")
		require.NoError(c.t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(c.t, err)

		for _, line := range strings.Split(string(body), "\n") {
			if !strings.HasPrefix(line, "jobmanager_jobs_ended_total{") {
				continue
			}

			var v float64
			_, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v)
			require.NoError(c.t, err)
			total += v
		}
	}

	return total
}

// startsByWorker counts the starts of each worker of each job.
func startsByWorker(p *platformtest.Platform) map[string][]*platformtest.Instance {
	out := map[string][]*platformtest.Instance{}
	for _, inst := range p.Instances() {
		cb := inst.Request.Config("JOB_CALLBACK_URL")
		key := cb[strings.LastIndex(cb, "/")+1:] + " " + inst.Request.Image
		out[key] = append(out[key], inst)
	}

	return out
}

func TestReplicasShareTheWorkAndEndEveryJobOnce(t *testing.T) {
	t.Parallel()
	const (
		jobs    = 300
		maxJobs = 8
	)
	c := newCluster(t, testdb.URL(t), 3, map[string]string{
		"CONF_JOBS_MAX_NUM":        fmt.Sprint(maxJobs),
		"JOBMANAGER_POLL_INTERVAL": "200ms",
		"CONF_JOBS_CHECK":          "2",
	})
	c.platform.OnStart = func(r platformtest.StartRequest) platformtest.Plan {
		return platformtest.Plan{
			Outputs: platformtest.ExampleOutputs(r),
			Delay:   time.Duration(rand.IntN(20)) * time.Millisecond,
		}
	}

	// Sample the running count while the jobs run.
	stop := make(chan struct{})
	peak := make(chan int)
	go func() {
		most := 0
		for {
			select {
			case <-stop:
				peak <- most
				return
			case <-time.After(5 * time.Millisecond):
			}

			var n int
			if c.pool.QueryRow(context.Background(),
				"SELECT count(*) FROM jobs WHERE status = 'running'").Scan(&n) == nil {
				most = max(most, n)
			}
		}
	}()

	ids := make([]string, jobs)
	aborts := map[string]int{} // job id → answer to its abort
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for i := range jobs {
		ids[i] = c.submit(fmt.Sprintf("h%03d", i))
		if i%10 != 3 {
			continue
		}

		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
			code, _ := post(c.pick().url+"/jobs/"+ids[i], `{"status":"aborted"}`)
			mu.Lock()
			aborts[ids[i]] = code
			mu.Unlock()
		}()
	}

	wg.Wait()
	c.waitEnded(ids)
	close(stop)

	assert.LessOrEqual(t, <-peak, maxJobs, "running jobs never exceed CONF_JOBS_MAX_NUM")
	assert.Equal(t, jobs, c.count("SELECT count(*) FROM history WHERE id = ANY($1)", ids),
		"every job ends exactly once")
	assert.Equal(t, 0, c.count("SELECT count(*) FROM jobs"))

	docs := c.history(ids)
	starts := startsByWorker(c.platform)
	for _, id := range ids {
		doc := docs[id]
		code, aborted := aborts[id]
		switch {
		case aborted && code == http.StatusOK:
			assert.Equal(t, job.StatusAborted, doc.Status, id)
		case aborted:
			assert.Equal(t, http.StatusConflict, code, "an abort is 200 or, after the end, 409")
			c.checkFinished(id, doc, nil)
		default:
			c.checkFinished(id, doc, nil)
		}
	}

	for key, list := range starts {
		assert.Len(t, list, 1, "worker %s started once", key)
	}

	assert.Equal(t, float64(jobs), c.endedPerMetrics(), "the replicas' metrics count every end once")

	answers := c.platform.Answers()
	for code, n := range answers {
		assert.True(t, code == http.StatusOK || code == http.StatusConflict,
			"results were answered %d %d times", code, n)
	}
}

func TestAKilledReplicasWorkIsTakenOver(t *testing.T) {
	t.Parallel()
	const jobs = 30
	c := newCluster(t, testdb.URL(t), 3, quickRecovery(12))
	slow := slowWorkers(200*time.Millisecond, 400*time.Millisecond)
	c.platform.OnStart = func(r platformtest.StartRequest) platformtest.Plan {
		// Starts take a while, so that the victim is caught holding some.
		plan := slow(r)
		plan.StartDelay = 100 * time.Millisecond
		return plan
	}
	ids := c.submitMany("k", jobs)

	victim := c.replicas[1]
	victimName := replicaNameOf(t, victim)
	c.eventually(func() bool {
		return c.count("SELECT count(*) FROM workers WHERE lease_owner = $1 AND state = 'starting'",
			victimName) > 0
	}, "the victim to be starting workers")
	killedAt := time.Now()
	c.kill(victim)

	c.waitEnded(ids)
	took := time.Since(killedAt)

	docs := c.history(ids)
	for _, id := range ids {
		c.checkFinished(id, docs[id], nil)
	}

	// A worker may be started twice only when the dead replica's start
	// request was out when it died: the record of its outcome was never
	// written.
	for key, list := range startsByWorker(c.platform) {
		if len(list) == 1 {
			continue
		}

		first := list[0]
		assert.True(t, first.Caller == "jobmanager/"+victimName &&
			first.Started.After(killedAt.Add(-time.Second)),
			"worker %s started %d times, first at %s by %s, kill at %s",
			key, len(list), first.Started, first.Caller, killedAt)
	}

	// The dead replica's steps fall due when their 2 s leases run out and
	// its workers are checked every second; what is left is the jobs' own
	// work, well under 10 s here.
	assert.Less(t, took, 2*time.Second+time.Second+10*time.Second)
	t.Logf("all %d jobs ended %s after the kill", jobs, took)
}

func TestReplicasRideOutADatabaseRestart(t *testing.T) {
	t.Parallel()
	server := privateServer(t)
	dbURL := server.url

	const jobs = 20
	c := newCluster(t, dbURL, 2, quickRecovery(6))
	c.platform.OnStart = slowWorkers(100*time.Millisecond, 300*time.Millisecond)
	ids := c.submitMany("r", jobs)

	c.eventually(func() bool {
		return c.count("SELECT count(*) FROM history") >= 3
	}, "some jobs to end")

	require.NoError(t, server.stop())
	for _, r := range c.replicas {
		c.eventually(func() bool { return status(r.url+"/readyz") == http.StatusServiceUnavailable },
			"replica %s to report not ready", r.url)
		assert.Equal(t, http.StatusOK, status(r.url+"/livez"), "liveness ignores the database")
	}

	time.Sleep(time.Second) // let workers report into the outage
	require.NoError(t, server.start())
	for _, r := range c.replicas {
		c.eventually(func() bool { return status(r.url+"/readyz") == http.StatusOK },
			"replica %s to be ready again", r.url)
	}

	c.waitEnded(ids)
	docs := c.history(ids)
	for _, id := range ids {
		c.checkFinished(id, docs[id], nil)
	}

	assert.Equal(t, jobs, c.count("SELECT count(*) FROM history WHERE id = ANY($1)", ids))
}

func TestSIGTERMStopsAReplicaThatHandsBackItsWork(t *testing.T) {
	t.Parallel()
	c := newCluster(t, testdb.URL(t), 1, map[string]string{
		"CONF_JOBS_MAX_NUM":           "4",
		"JOBMANAGER_LEASE":            "60s",
		"JOBMANAGER_PEER_TIMEOUT":     "20s",
		"JOBMANAGER_SHUTDOWN_TIMEOUT": "1s",
		"JOBMANAGER_DRAIN_DELAY":      "1s",
	})

	// The first start requests hang, so that the stopping replica holds
	// steps it cannot finish within its shutdown timeout.
	var hung sync.Once
	hang := make(chan struct{})
	c.platform.OnStart = func(r platformtest.StartRequest) platformtest.Plan {
		plan := platformtest.Plan{Outputs: platformtest.ExampleOutputs(r)}
		hung.Do(func() {
			close(hang)
			plan.StartDelay = 5 * time.Second
		})

		return plan
	}

	r := c.replicas[0]
	var ids []string
	for i := range 4 {
		code, id := post(r.url+"/jobs", fmt.Sprintf(`{"hash":"g%d","ds_id":"ds","file_name":"f"}`, i))
		require.Equal(t, http.StatusOK, code, id)
		ids = append(ids, id)
	}

	// Only now comes a replica to take the work over.
	<-hang
	c.add()
	start := time.Now()
	c.mu.Lock()
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
	c.mu.Unlock()

	assert.Eventually(t, func() bool { return status(r.url+"/readyz") == http.StatusServiceUnavailable },
		5*time.Second, 5*time.Millisecond, "a stopping replica answers not ready while it drains")
	assert.Equal(t, http.StatusOK, status(r.url+"/livez"), "and still serves meanwhile")

	exited := make(chan struct{})
	go func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		assert.NoError(t, r.cmd.Wait(), "a graceful stop exits 0")
		close(exited)
	}()

	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("replica did not exit within its shutdown timeout")
	}

	c.waitEnded(ids)

	// Jobs whose steps the stopped replica held end long before its 60 s
	// leases would have run out: it handed them back.
	assert.Less(t, time.Since(start), 30*time.Second)
	docs := c.history(ids)
	for _, id := range ids {
		c.checkFinished(id, docs[id], nil)
	}

	log, err := os.ReadFile(r.log)
	require.NoError(t, err)
	assert.Contains(t, string(log), "abandoning steps under way")
	assert.Contains(t, string(log), `"msg":"stopped"`)
}

// replicaNameOf reads the name a replica gave itself from its log.
func replicaNameOf(t *testing.T, r *replica) string {
	t.Helper()

	log, err := os.ReadFile(r.log)
	require.NoError(t, err)

	m := regexp.MustCompile(`"replica":"([^"]+)"`).FindSubmatch(log)
	require.NotNil(t, m, "the replica logs its name")

	return string(m[1])
}

// pgServer is a PostgreSQL server this test owns and may stop.
type pgServer struct {
	url   string
	stop  func() error
	start func() error
}

func post(url, body string) (int, string) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()

	b, _ := io.ReadAll(resp.Body)

	return resp.StatusCode, string(b)
}

func status(url string) int {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()

	return resp.StatusCode
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()

	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}

	return s[len(s)-n:]
}
