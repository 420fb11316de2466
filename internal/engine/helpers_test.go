package engine_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/platformtest"
)

// abort posts an abort to a job and returns the answer.
func (s *service) abort(id string) (int, string) {
	s.t.Helper()

	return s.post("/jobs/"+id, `{"status":"aborted"}`)
}

// report posts a worker's result to a job, as the worker would, and
// returns the answer.
func (s *service) report(id, instance string, outputs any) (int, string) {
	s.t.Helper()

	body, err := json.Marshal(map[string]any{instance: outputs})
	require.NoError(s.t, err)

	return s.post("/jobs/"+id, string(body))
}

// instances returns the instances of a worker image, in start order.
func (s *service) instances(image string) []*platformtest.Instance {
	var found []*platformtest.Instance
	for _, inst := range s.platform.Instances() {
		if inst.Request.Image == image {
			found = append(found, inst)
		}
	}

	return found
}

// awaitInstances waits until n instances of a worker image have started
// and returns them in start order.
func (s *service) awaitInstances(image string, n int) []*platformtest.Instance {
	s.t.Helper()

	s.eventually(func() bool { return len(s.instances(image)) >= n }, "%d instances of %s", n, image)

	return s.instances(image)
}

// awaitRunning waits until the job's worker with instance inst is
// recorded as running, so that a result for it is matched at once.
func (s *service) awaitRunning(id, inst string) {
	s.t.Helper()

	s.eventually(func() bool {
		return s.count(`SELECT count(*) FROM workers WHERE job_id = $1 AND instance = $2 AND state = 'running'`,
			id, inst) == 1
	}, "worker %s of job %s to run", inst, id)
}

// historyJSON returns a job's latest history document as the API sends it.
func (s *service) historyJSON(id string) []byte {
	s.t.Helper()

	status, body := s.get("/history/" + id)
	require.Equal(s.t, http.StatusOK, status, string(body))

	return body
}

// image is the image a test pipeline's stage runs, as start requests
// name it.
func image(name string) string {
	return "platform/" + name + ":1.0"
}

// field returns the raw value of one field of each output.
func field(t *testing.T, outputs []json.RawMessage, name string) []string {
	t.Helper()

	values := make([]string, len(outputs))
	for i, raw := range outputs {
		var out map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(raw, &out), string(raw))
		values[i] = string(out[name])
	}

	return values
}

// quoted returns the JSON texts of strings.
func quoted(values ...string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		b, _ := json.Marshal(v)
		out[i] = string(b)
	}

	return out
}

// platformRef hands the fake platform to worker behaviours, which are
// fixed before setup returns it.
type platformRef struct {
	p atomic.Pointer[platformtest.Platform]
}

// alive counts the instances of an image that were started and not yet
// removed.
func (r *platformRef) alive(image string) int {
	p := r.p.Load()
	if p == nil {
		return 0
	}

	n := 0
	for _, inst := range p.Instances() {
		if inst.Request.Image == image && !inst.Removed() {
			n++
		}
	}

	return n
}

// peak keeps the highest value it has seen.
type peak struct {
	mu  sync.Mutex
	max int
}

func (p *peak) see(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()

	p.max = max(p.max, n)
}

func (p *peak) get() int {
	p.mu.Lock()
	defer p.mu.Unlock()

	return p.max
}

// callbackLog sits between the fake workers and the service: it forwards
// every result a worker posts and records how the service answered.
type callbackLog struct {
	mu       sync.Mutex
	statuses map[string][]int // by request path
}

// recordCallbacks routes the platform's worker results through a
// callbackLog.
func (s *service) recordCallbacks() *callbackLog {
	s.t.Helper()

	target, err := url.Parse(s.url)
	require.NoError(s.t, err)

	log := &callbackLog{statuses: map[string][]int{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		log.mu.Lock()
		defer log.mu.Unlock()

		path := resp.Request.URL.Path
		log.statuses[path] = append(log.statuses[path], resp.StatusCode)

		return nil
	}

	srv := httptest.NewServer(proxy)
	s.t.Cleanup(srv.Close)

	s.platform.Callback = func(u string) string {
		return srv.URL + u[len(s.url):]
	}

	return log
}

// answers returns the statuses the service answered to results posted
// for a job, in the order the answers came.
func (l *callbackLog) answers(id string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()

	return append([]int(nil), l.statuses["/jobs/"+id]...)
}

// holdPipeline has one stage whose worker reports only when the test posts
// for it.
func holdPipeline() json.RawMessage {
	return platformtest.Pipeline("hold", platformtest.StageSpec{
		Image: "hold", InputType: "single",
		InputMap: map[string]string{"upload": "init_source"},
		Outputs:  map[string]bool{"held": false},
	})
}

// holdWorkers never report on their own.
func holdWorkers(platformtest.StartRequest) platformtest.Plan {
	return platformtest.Plan{}
}

// instanceOf waits for the instance started for a job and returns it.
func (s *service) instanceOf(id string) *platformtest.Instance {
	s.t.Helper()

	var found *platformtest.Instance
	s.eventually(func() bool {
		for _, inst := range s.platform.Instances() {
			if inst.Request.Config("JOB_CALLBACK_URL") == s.url+"/jobs/"+id {
				found = inst
				return true
			}
		}

		return false
	}, "a worker of job %s", id)

	return found
}

// postStatus posts a JSON body and returns the answer's status; it is safe
// to call from any goroutine.
func postStatus(url, body string) (int, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()

	return resp.StatusCode, nil
}

// mustJSON encodes a value the test built.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()

	b, err := json.Marshal(v)
	require.NoError(t, err)

	return b
}
