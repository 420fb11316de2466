// Command trim is an example worker: it drops a column from a CSV file and
// trims the spaces around every value.
//
// Input: input_csv, the CSV's data-cache file name.
// Config: drop_column, the column to drop (default "unit").
// Output: output_csv, the new CSV's file name; line_count, its data rows.
package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/industrial-data/jobmanager/examples/internal/worker"
)

func main() {
	worker.Run("trim", trim)
}

func trim(env worker.Env) ([]worker.Output, error) {
	in, err := os.Open(env.Path(env.Get("input_csv", "")))
	if err != nil {
		return nil, err
	}
	defer in.Close()

	name := worker.NewFile()
	out, err := os.Create(env.Path(name))
	if err != nil {
		return nil, err
	}
	defer out.Close()

	r := csv.NewReader(in)
	w := csv.NewWriter(out)

	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}

	drop := slices.Index(header, env.Get("drop_column", "unit"))
	if err := w.Write(without(header, drop)); err != nil {
		return nil, err
	}

	lines := 0
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			return nil, fmt.Errorf("read line %d: %w", lines+2, err)
		}

		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}

		if err := w.Write(without(rec, drop)); err != nil {
			return nil, err
		}

		lines++
	}

	w.Flush()
	if err := w.Error(); err != nil {
		return nil, err
	}

	return []worker.Output{{"output_csv": name, "line_count": lines}}, out.Close()
}

// without returns rec less its column i; a negative i drops nothing.
func without(rec []string, i int) []string {
	if i < 0 || i >= len(rec) {
		return rec
	}

	return slices.Delete(slices.Clone(rec), i, i+1)
}
