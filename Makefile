# Every target here is run by CI (.ci/run) or named in the README.

GO ?= go
BIN := bin/jobmanager

.PHONY: build run test generate check-generated

build:
	$(GO) build -o $(BIN) ./cmd/jobmanager

# run starts the service on the database DATABASE_URL names, else on the
# PostgreSQL server on 127.0.0.1:5432.
run: build
	@DATABASE_URL="$$($(GO) run ./cmd/devdb)" && export DATABASE_URL && \
	  echo "jobmanager: serving on $${JOBMANAGER_LISTEN_ADDR:-:8080}" >&2 && \
	  exec ./$(BIN)

# test checks the generated code and formatting, then runs every test
# against a real PostgreSQL (see internal/testdb for how one is found).
test: check-generated
	@test -z "$$(gofmt -l cmd internal migrations)" || { gofmt -l cmd internal migrations; echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# generate regenerates the sqlc code from db/queries and migrations.
generate:
	$(GO) tool sqlc generate

# check-generated fails when the committed sqlc code is stale.
check-generated:
	$(GO) tool sqlc diff
