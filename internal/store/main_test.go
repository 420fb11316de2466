package store_test

import (
	"testing"

	"github.com/industrial-data/jobmanager/internal/testdb"
)

func TestMain(m *testing.M) {
	testdb.Main(m)
}
