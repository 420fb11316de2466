# Every target here is run by CI (.ci/run) or named in the README.

GO ?= go
LISTEN ?= 127.0.0.1:8080
CACHE := .data/cache

.PHONY: build run test bench generate check-generated sample

# build builds the service and the example workers into bin/.
build:
	$(GO) build -o bin/ ./cmd/jobmanager ./examples/xlsx-to-csv ./examples/trim ./examples/split

# run starts the service with the platform on this machine: pipelines from
# examples/platform.json, workers as local processes, files in .data/cache.
# The database is DATABASE_URL, else the server on 127.0.0.1:5432, else a
# private server under .data/pg (see cmd/devdb).
run: build
	@cache="$${CONF_DATACACHE_PATH:-$(CACHE)}"; mkdir -p "$$cache" && \
	  { [ -e "$$cache/energy.xlsx" ] || cp examples/sample/energy.xlsx "$$cache/energy.xlsx"; }
	@DATABASE_URL="$$($(GO) run ./cmd/devdb)" || exit 1; \
	  export DATABASE_URL; \
	  export JOBMANAGER_LISTEN_ADDR="$${JOBMANAGER_LISTEN_ADDR:-$(LISTEN)}"; \
	  export JOBMANAGER_REGISTRY="$${JOBMANAGER_REGISTRY:-file}"; \
	  export JOBMANAGER_LAUNCHER="$${JOBMANAGER_LAUNCHER:-local}"; \
	  export JOBMANAGER_PLATFORM_FILE="$${JOBMANAGER_PLATFORM_FILE:-examples/platform.json}"; \
	  export JOBMANAGER_KEEP_OUTPUT_FILES="$${JOBMANAGER_KEEP_OUTPUT_FILES:-true}"; \
	  export CONF_DATACACHE_PATH="$${CONF_DATACACHE_PATH:-$(CACHE)}"; \
	  export CONF_WORKERCALLBACK_URL="$${CONF_WORKERCALLBACK_URL:-http://127.0.0.1:$${JOBMANAGER_LISTEN_ADDR##*:}}"; \
	  export CONF_JOBS_CHECK="$${CONF_JOBS_CHECK:-1}"; \
	  host="$${JOBMANAGER_LISTEN_ADDR%:*}"; port="$${JOBMANAGER_LISTEN_ADDR##*:}"; \
	  url="http://$${host:-127.0.0.1}:$$port"; \
	  echo; \
	  echo "jobmanager: starting on $$url; once it logs \"serving\", submit the sample with:"; \
	  echo; \
	  echo "  curl -H 'Content-Type: application/json' -d '{\"hash\":\"sample-1\",\"ds_id\":\"energy-demo\",\"file_name\":\"energy.xlsx\"}' $$url/jobs"; \
	  echo; \
	  exec ./bin/jobmanager

# test checks the generated code and formatting, then runs every test
# against a real PostgreSQL (see internal/testdb for how one is found).
test: check-generated
	@test -z "$$(gofmt -l cmd internal examples migrations)" || \
	  { gofmt -l cmd internal examples migrations; echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# bench runs the Go benchmarks of the hot paths, then the load generator
# against three replicas of the built binary (see cmd/bench for settings:
# make bench BENCH_FLAGS='-replicas 2 -jobs 5000').
BENCH_FLAGS ?=
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1s ./internal/job/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 50x ./internal/store/
	$(GO) run ./cmd/bench $(BENCH_FLAGS)

# generate regenerates the sqlc code from db/queries and migrations.
generate:
	$(GO) tool sqlc generate

# check-generated fails when the committed sqlc code is stale.
check-generated:
	$(GO) tool sqlc diff

# sample rewrites the sample workbook (see examples/sample/generate).
sample:
	$(GO) run ./examples/sample/generate -o examples/sample/energy.xlsx
