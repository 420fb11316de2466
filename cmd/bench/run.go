package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/industrial-data/jobmanager/internal/pgserver"
	"github.com/industrial-data/jobmanager/internal/platformtest"
)

// recorder keeps what the fake platform saw of the service.
type recorder struct {
	mu        sync.Mutex
	callbacks map[string][]time.Duration // job id → result post latencies
	sent      map[*platformtest.Instance]time.Time
	failures  atomic.Int64
}

func (r *recorder) report(inst *platformtest.Instance, status int, sent, answered time.Time) {
	if status != http.StatusOK {
		r.failures.Add(1)
		return
	}

	id := jobOf(inst)

	r.mu.Lock()
	defer r.mu.Unlock()

	r.callbacks[id] = append(r.callbacks[id], answered.Sub(sent))
	r.sent[inst] = sent
}

func jobOf(inst *platformtest.Instance) string {
	cb := inst.Request.Config("JOB_CALLBACK_URL")

	return cb[strings.LastIndex(cb, "/")+1:]
}

// phase is what one load run measured.
type phase struct {
	name      string
	jobs      int
	elapsed   time.Duration
	submits   []time.Duration
	callbacks []time.Duration
	handoffs  []time.Duration
	endToEnd  []time.Duration
	xacts     int64
	cpu       time.Duration
	pgCPU     time.Duration
	selfCPU   time.Duration
	errors    int64

	mu  sync.Mutex
	ids []string
}

// submit submits job i of the phase in the background.
func (ph *phase) submit(wg *sync.WaitGroup, base, hash string, i int) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		id, took, err := submit(base, hash)

		ph.mu.Lock()
		defer ph.mu.Unlock()

		if err != nil {
			ph.errors++
			return
		}

		ph.ids[i] = id
		ph.submits = append(ph.submits, took)
	}()
}

func run(ctx context.Context, s settings) error {
	var c cleanups
	defer c.run()

	dbURL, adminURL, err := database(ctx, s.adminURL, &c)
	if err != nil {
		return err
	}

	if s.logSQL {
		name := dbURL[strings.LastIndex(dbURL, "/")+1 : strings.Index(dbURL, "?")]
		if err := adminExec(ctx, adminURL, "ALTER DATABASE "+name+" SET log_statement = 'all'"); err != nil {
			return err
		}
	}

	rec := &recorder{callbacks: map[string][]time.Duration{}, sent: map[*platformtest.Instance]time.Time{}}
	platform := platformtest.New(&c, platformtest.ExampleWorkers)
	platform.AddDataSource("ds", "p")
	platform.SetPipeline("p", platformtest.ExamplePipeline())
	platform.OnReport = rec.report

	replicas, err := startReplicas(s, dbURL, platform, &c)
	if err != nil {
		return err
	}

	rr := &roundRobin{replicas: replicas}
	platform.Callback = rr.rewrite

	mon, err := newMonitor(ctx, dbURL, adminURL)
	if err != nil {
		return err
	}
	defer mon.close()

	fmt.Fprintf(os.Stderr, "bench: %d replicas on %s; warming up\n", s.replicas, dbURL)
	if _, err := closedLoop(ctx, "warm-up", 200, s.concurrency, rr, mon, rec, platform, replicas); err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "bench: closed loop, %d jobs, %d in flight\n", s.jobs, s.concurrency)
	profiled := make(chan error, 1)
	if s.cpuProfile != "" {
		go func() { profiled <- profile(replicas[0].debug, s.cpuProfile) }()
	} else {
		profiled <- nil
	}

	closed, err := closedLoop(ctx, "closed loop", s.jobs, s.concurrency, rr, mon, rec, platform, replicas)
	if err != nil {
		return err
	}

	if err := <-profiled; err != nil {
		return fmt.Errorf("profile: %w", err)
	}

	rate := s.rate
	if rate == 0 {
		rate = float64(closed.jobs) / closed.elapsed.Seconds() / 2
	}

	fmt.Fprintf(os.Stderr, "bench: fixed rate, %.0f jobs/s for %s\n", rate, s.duration)
	open, err := fixedRate(ctx, rate, s.duration, rr, mon, rec, platform, replicas)
	if err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "bench: pgbench for %s\n", s.pgbenchTime)
	tps, err := pgbench(ctx, dbURL, s.pgbenchTime)
	if err != nil {
		return err
	}

	print(os.Stdout, s, []*phase{closed, open}, tps, peakRSS(replicas))

	return nil
}

// closedLoop keeps `inFlight` jobs in flight until n jobs have ended.
func closedLoop(ctx context.Context, name string, n, inFlight int, rr *roundRobin, mon *monitor,
	rec *recorder, p *platformtest.Platform, replicas []*replica) (*phase, error) {
	ph := &phase{name: name, jobs: n, ids: make([]string, n)}
	start, err := mon.begin(ctx, replicas)
	if err != nil {
		return nil, err
	}

	slots := make(chan struct{}, inFlight)
	var wg sync.WaitGroup

	done := make(chan error, 1)
	go func() { done <- mon.waitEnded(ctx, start, n, func() { <-slots }) }()

	for i := range n {
		slots <- struct{}{}
		ph.submit(&wg, rr.url(), fmt.Sprintf("%s-%d-%d", name, start.at.UnixNano(), i), i)
	}

	wg.Wait()
	if err := <-done; err != nil {
		return nil, err
	}

	return ph, finish(ctx, ph, start, mon, rec, p, replicas)
}

// fixedRate submits jobs at rate per second for d, then waits for them.
func fixedRate(ctx context.Context, rate float64, d time.Duration, rr *roundRobin, mon *monitor,
	rec *recorder, p *platformtest.Platform, replicas []*replica) (*phase, error) {
	n := int(rate * d.Seconds())
	ph := &phase{name: "fixed rate", jobs: n, ids: make([]string, n)}
	start, err := mon.begin(ctx, replicas)
	if err != nil {
		return nil, err
	}

	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	for i := range n {
		time.Sleep(time.Until(start.at.Add(time.Duration(i) * interval)))
		ph.submit(&wg, rr.url(), fmt.Sprintf("rate-%d-%d", start.at.UnixNano(), i), i)
	}

	wg.Wait()
	if err := mon.waitEnded(ctx, start, n, func() {}); err != nil {
		return nil, err
	}

	return ph, finish(ctx, ph, start, mon, rec, p, replicas)
}

// finish reads what a phase measured once all its jobs have ended.
func finish(ctx context.Context, ph *phase, start mark, mon *monitor, rec *recorder,
	p *platformtest.Platform, replicas []*replica) error {
	ids := ph.ids
	ph.elapsed = time.Since(start.at)

	end, err := mon.end(ctx, replicas)
	if err != nil {
		return err
	}

	ph.xacts = end.xacts - start.xacts - mon.ownXacts(start, end)
	ph.cpu = end.cpu - start.cpu
	ph.pgCPU = end.pgCPU - start.pgCPU
	ph.selfCPU = end.selfCPU - start.selfCPU
	ph.errors += rec.failures.Swap(0)

	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}

	rec.mu.Lock()
	for id := range want {
		ph.callbacks = append(ph.callbacks, rec.callbacks[id]...)
	}

	byJob := map[string]map[string]*platformtest.Instance{}
	for _, inst := range p.Instances() {
		id := jobOf(inst)
		if !want[id] {
			continue
		}

		if byJob[id] == nil {
			byJob[id] = map[string]*platformtest.Instance{}
		}

		byJob[id][inst.Request.Image] = inst
	}

	stages := []string{"platform/xlsx-to-csv:1.0", "platform/trim:1.0", "platform/split:1.0"}
	for _, insts := range byJob {
		for k := 0; k+1 < len(stages); k++ {
			prev, next := insts[stages[k]], insts[stages[k+1]]
			sent, ok := rec.sent[prev]
			if prev != nil && next != nil && ok {
				ph.handoffs = append(ph.handoffs, next.Started.Sub(sent))
			}
		}
	}
	rec.mu.Unlock()

	ph.endToEnd, err = mon.endToEnd(ctx, ids)

	return err
}

// profile saves a 10 s CPU profile of a replica.
func profile(addr, path string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=10")
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	f, err := os.Create(path)
	if err != nil {
		return err
	}

	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}

	return f.Close()
}

func submit(base, hash string) (string, time.Duration, error) {
	body := `{"hash":"` + hash + `","ds_id":"ds","file_name":"` + hash + `.xlsx"}`
	start := time.Now()
	resp, err := http.Post(base+"/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()

	id, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		return "", 0, err
	}

	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("submit: %d %s", resp.StatusCode, id)
	}

	return string(id), took, nil
}

// mark is a reading of the counters a phase compares.
type mark struct {
	at      time.Time
	ended   int
	xacts   int64
	cpu     time.Duration
	pgCPU   time.Duration
	selfCPU time.Duration
	polls   int64
}

// monitor watches the database on a connection of its own. Its own
// transactions are counted, so that they can be left out of the service's.
type monitor struct {
	conn   *pgx.Conn
	admin  *pgx.Conn
	dbName string
	polls  int64
}

func newMonitor(ctx context.Context, dbURL, adminURL string) (*monitor, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}

	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, err
	}

	return &monitor{conn: conn, admin: admin, dbName: conn.Config().Database}, nil
}

func (m *monitor) close() {
	m.conn.Close(context.Background())
	m.admin.Close(context.Background())
}

func (m *monitor) ended(ctx context.Context) (int, error) {
	m.polls++

	var n int
	err := m.conn.QueryRow(ctx, "SELECT count(*) FROM history").Scan(&n)

	return n, err
}

// waitEnded waits until n more jobs than at start have ended, calling
// onEnd once per job that ends.
func (m *monitor) waitEnded(ctx context.Context, start mark, n int, onEnd func()) error {
	seen := start.ended
	deadline := time.Now().Add(10 * time.Minute)
	for seen < start.ended+n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d jobs ended", seen-start.ended, n)
		}

		time.Sleep(5 * time.Millisecond)
		now, err := m.ended(ctx)
		if err != nil {
			return err
		}

		for ; seen < now; seen++ {
			onEnd()
		}
	}

	return nil
}

// begin and end read the counters before and after a phase. The
// database's statistics reach pg_stat_database within a second or so of
// each transaction, so end waits for them to settle.
func (m *monitor) begin(ctx context.Context, replicas []*replica) (mark, error) {
	return m.read(ctx, replicas)
}

func (m *monitor) end(ctx context.Context, replicas []*replica) (mark, error) {
	time.Sleep(1500 * time.Millisecond)

	return m.read(ctx, replicas)
}

func (m *monitor) read(ctx context.Context, replicas []*replica) (mark, error) {
	ended, err := m.ended(ctx)
	if err != nil {
		return mark{}, err
	}

	var xacts int64
	if _, err := m.admin.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		return mark{}, err
	}

	err = m.admin.QueryRow(ctx,
		"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", m.dbName).Scan(&xacts)
	if err != nil {
		return mark{}, err
	}

	var cpu time.Duration
	for _, r := range replicas {
		cpu += cpuTime(r.cmd.Process.Pid)
	}

	return mark{
		at: time.Now(), ended: ended, xacts: xacts, cpu: cpu, polls: m.polls,
		pgCPU: postgresCPU(), selfCPU: cpuTime(os.Getpid()),
	}, nil
}

// ownXacts counts the monitor's transactions on the measured database
// between two marks.
func (m *monitor) ownXacts(start, end mark) int64 {
	return end.polls - start.polls
}

// endToEnd returns, for each job, the time from its creation to its end
// as the database recorded them.
func (m *monitor) endToEnd(ctx context.Context, ids []string) ([]time.Duration, error) {
	m.polls++
	rows, err := m.conn.Query(ctx,
		`SELECT extract(epoch FROM ended - (doc->>'created')::timestamptz)
		 FROM history WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()

	var out []time.Duration
	for rows.Next() {
		var secs float64
		if err := rows.Scan(&secs); err != nil {
			return nil, err
		}

		out = append(out, time.Duration(secs*float64(time.Second)))
	}

	return out, rows.Err()
}

// cpuTime reads the user and system time a process has used.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}

	// Fields after the command name, which is in parentheses.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)

	const ticksPerSecond = 100 // USER_HZ on Linux

	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// postgresCPU adds up the CPU time of every PostgreSQL process on this
// machine: the server's share of the work, when nothing else uses it.
func postgresCPU() time.Duration {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}

	var total time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}

		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(comm)) == "postgres" {
			total += cpuTime(pid)
		}
	}

	return total
}

// peakRSS returns the largest peak resident set of the replicas, in bytes.
func peakRSS(replicas []*replica) int64 {
	var peak int64
	for _, r := range replicas {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
		if err != nil {
			continue
		}

		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				peak = max(peak, kb*1024)
			}
		}
	}

	return peak
}

// pgbench measures the server's rate for the kind of transaction the
// service runs most: lock one row, update its JSONB document, commit.
func pgbench(ctx context.Context, dbURL string, d time.Duration) (float64, error) {
	path, err := pgserver.Binary("pgbench")
	if err != nil {
		return 0, err
	}

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)

	_, err = conn.Exec(ctx, `
		CREATE TABLE bench_docs (id int PRIMARY KEY, doc jsonb NOT NULL);
		INSERT INTO bench_docs
		SELECT i, jsonb_build_object('status', 'running', 'stages', '{}'::jsonb, 'n', i)
		FROM generate_series(1, 10000) i`)
	if err != nil {
		return 0, fmt.Errorf("prepare pgbench table: %w", err)
	}

	dir, err := os.MkdirTemp("", "jobmanager-pgbench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)

	script := filepath.Join(dir, "update.sql")
	err = os.WriteFile(script, []byte(`\set id random(1, 10000)
BEGIN;
SELECT doc FROM bench_docs WHERE id = :id FOR UPDATE;
UPDATE bench_docs SET doc = jsonb_set(doc, '{n}', to_jsonb(:id)) WHERE id = :id;
COMMIT;
`), 0o644)
	if err != nil {
		return 0, err
	}

	out, err := exec.CommandContext(ctx, path, "-n", "-f", script, "-c", "16", "-j", "2",
		"-T", strconv.Itoa(int(d.Seconds())), dbURL).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %w: %s", err, out)
	}

	m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return 0, errors.New("pgbench printed no tps: " + string(out))
	}

	return strconv.ParseFloat(string(m[1]), 64)
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}

	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))]) / float64(time.Millisecond)
	}

	return fmt.Sprintf("%.1f / %.1f / %.1f", at(0.50), at(0.95), at(0.99))
}

func print(w io.Writer, s settings, phases []*phase, tps float64, rss int64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()

	row := func(label string, value func(p *phase) string) {
		fmt.Fprint(tw, label)
		for _, p := range phases {
			fmt.Fprint(tw, "\t", value(p))
		}
		fmt.Fprintln(tw)
	}

	fmt.Fprintf(tw, "%d replicas, %d jobs in flight in the closed loop\t", s.replicas, s.concurrency)
	for _, p := range phases {
		fmt.Fprint(tw, "\t", p.name)
	}
	fmt.Fprintln(tw)

	row("jobs (errors)", func(p *phase) string { return fmt.Sprintf("%d (%d)", p.jobs, p.errors) })
	row("jobs completed per second", func(p *phase) string {
		return fmt.Sprintf("%.0f", float64(p.jobs)/p.elapsed.Seconds())
	})
	row("POST /jobs p50 / p95 / p99 ms", func(p *phase) string { return percentiles(p.submits) })
	row("result callback p50 / p95 / p99 ms", func(p *phase) string { return percentiles(p.callbacks) })
	row("stage hand-off p50 / p95 / p99 ms", func(p *phase) string { return percentiles(p.handoffs) })
	row("job end to end p50 / p95 / p99 ms", func(p *phase) string { return percentiles(p.endToEnd) })
	row("database transactions per job", func(p *phase) string {
		return fmt.Sprintf("%.1f", float64(p.xacts)/float64(p.jobs))
	})
	row("database transactions per second", func(p *phase) string {
		return fmt.Sprintf("%.0f", float64(p.xacts)/p.elapsed.Seconds())
	})
	row("replica CPU seconds per 1,000 jobs", func(p *phase) string {
		return fmt.Sprintf("%.1f", p.cpu.Seconds()*1000/float64(p.jobs))
	})
	row("PostgreSQL CPU seconds per 1,000 jobs", func(p *phase) string {
		return fmt.Sprintf("%.1f", p.pgCPU.Seconds()*1000/float64(p.jobs))
	})
	row("load generator and fake platform CPU seconds per 1,000 jobs", func(p *phase) string {
		return fmt.Sprintf("%.1f", p.selfCPU.Seconds()*1000/float64(p.jobs))
	})
	row("service tx/s : pgbench TPS", func(p *phase) string {
		return fmt.Sprintf("%.2f", float64(p.xacts)/p.elapsed.Seconds()/tps)
	})

	fmt.Fprintf(tw, "peak RSS per replica\t%.0f MiB\n", float64(rss)/(1<<20))
	fmt.Fprintf(tw, "pgbench TPS, locked single-row JSONB update (16 clients)\t%.0f\n", tps)
}
