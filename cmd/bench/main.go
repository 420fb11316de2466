// Command bench measures the job manager under load: it starts replicas of
// the built binary on a fresh database, plays the platform with workers
// that answer at once, and runs the three-stage example pipeline of the
// original API document (three workers per job) in a closed loop and then
// at a fixed arrival rate. It prints one table, including pgbench's rate
// for a single-row locked JSONB update on the same server in the same run.
//
//	go run ./cmd/bench -replicas 3 -jobs 3000 -concurrency 64 -duration 20s
//
// `make bench` builds the binary and runs this with its defaults.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"
)

type settings struct {
	binary      string
	adminURL    string
	replicas    int
	jobs        int
	concurrency int
	duration    time.Duration
	rate        float64
	pgbenchTime time.Duration
	maxJobs     int
	logSQL      bool
	cpuProfile  string
}

func main() {
	var s settings
	flag.StringVar(&s.binary, "binary", "bin/jobmanager", "the service's binary")
	flag.StringVar(&s.adminURL, "admin-url", os.Getenv("BENCH_ADMIN_URL"),
		"maintenance database of the PostgreSQL server to use; default 127.0.0.1:5432, "+
			"else a private server under .data/bench-pg")
	flag.IntVar(&s.replicas, "replicas", 3, "replicas of the service")
	flag.IntVar(&s.jobs, "jobs", 3000, "jobs of the closed-loop run")
	flag.IntVar(&s.concurrency, "concurrency", 64, "jobs in flight in the closed-loop run")
	flag.DurationVar(&s.duration, "duration", 20*time.Second, "length of the fixed-rate run")
	flag.Float64Var(&s.rate, "rate", 0, "arrivals per second of the fixed-rate run; 0: half the closed-loop peak")
	flag.DurationVar(&s.pgbenchTime, "pgbench-time", 10*time.Second, "length of the pgbench run")
	flag.IntVar(&s.maxJobs, "max-jobs", 1000, "CONF_JOBS_MAX_NUM of the replicas")
	flag.BoolVar(&s.logSQL, "log-statements", false,
		"have the server log every statement on the bench database (to see what a job costs)")
	flag.StringVar(&s.cpuProfile, "cpuprofile", "",
		"write a 10 s CPU profile of the first replica, taken during the closed loop, to this file")
	flag.Parse()

	if err := run(context.Background(), s); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
