// Command xlsx-to-csv is an example worker: it turns the first sheet of an
// XLSX workbook into a CSV file.
//
// Input: xlsx_file, the workbook's data-cache file name.
// Output: csv_file, the CSV's file name; line_count, its data rows.
package main

import (
	"encoding/csv"
	"fmt"
	"os"

	"github.com/xuri/excelize/v2"

	"github.com/industrial-data/jobmanager/examples/internal/worker"
)

func main() {
	worker.Run("xlsx-to-csv", convert)
}

func convert(env worker.Env) ([]worker.Output, error) {
	book, err := excelize.OpenFile(env.Path(env.Get("xlsx_file", "")))
	if err != nil {
		return nil, fmt.Errorf("open workbook: %w", err)
	}
	defer book.Close()

	rows, err := book.Rows(book.GetSheetName(0))
	if err != nil {
		return nil, fmt.Errorf("read sheet: %w", err)
	}
	defer rows.Close()

	name := worker.NewFile()
	f, err := os.Create(env.Path(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()

	w := csv.NewWriter(f)
	lines := -1 // the header is not a data row
	for rows.Next() {
		cols, err := rows.Columns()
		if err != nil {
			return nil, fmt.Errorf("read row: %w", err)
		}

		if err := w.Write(cols); err != nil {
			return nil, err
		}

		lines++
	}

	if err := rows.Error(); err != nil {
		return nil, fmt.Errorf("read rows: %w", err)
	}

	w.Flush()
	if err := w.Error(); err != nil {
		return nil, err
	}

	return []worker.Output{{"csv_file": name, "line_count": max(lines, 0)}}, f.Close()
}
