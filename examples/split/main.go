// Command split is an example worker: it splits a CSV file into one file
// per value of a column, such as one table per sensor.
//
// Input: source_table, the CSV's data-cache file name.
// Config: split_column, the column to split by (default "sensor").
// Output, one per value: unique_id, the value; result_table, its CSV's
// file name; line_count, its data rows, as a string like the platform's
// own split worker reports it.
package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"

	"github.com/industrial-data/jobmanager/examples/internal/worker"
)

func main() {
	worker.Run("split", split)
}

type table struct {
	name  string
	file  *os.File
	w     *csv.Writer
	lines int
}

func split(env worker.Env) ([]worker.Output, error) {
	in, err := os.Open(env.Path(env.Get("source_table", "")))
	if err != nil {
		return nil, err
	}
	defer in.Close()

	r := csv.NewReader(in)
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}

	column := env.Get("split_column", "sensor")
	by := slices.Index(header, column)
	if by < 0 {
		return nil, fmt.Errorf("no column %q in %v", column, header)
	}

	tables := map[string]*table{}
	defer func() {
		for _, t := range tables {
			t.file.Close()
		}
	}()

	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}

		t, ok := tables[rec[by]]
		if !ok {
			if t, err = newTable(env, header); err != nil {
				return nil, err
			}

			tables[rec[by]] = t
		}

		if err := t.w.Write(rec); err != nil {
			return nil, err
		}

		t.lines++
	}

	values := make([]string, 0, len(tables))
	for v := range tables {
		values = append(values, v)
	}
	sort.Strings(values)

	outputs := make([]worker.Output, 0, len(values))
	for _, v := range values {
		t := tables[v]
		t.w.Flush()
		if err := t.w.Error(); err != nil {
			return nil, err
		}

		outputs = append(outputs, worker.Output{
			"unique_id": v, "result_table": t.name, "line_count": strconv.Itoa(t.lines),
		})
	}

	return outputs, nil
}

func newTable(env worker.Env, header []string) (*table, error) {
	name := worker.NewFile()
	f, err := os.Create(env.Path(name))
	if err != nil {
		return nil, err
	}

	w := csv.NewWriter(f)
	if err := w.Write(header); err != nil {
		f.Close()
		return nil, err
	}

	return &table{name: name, file: f, w: w}, nil
}
