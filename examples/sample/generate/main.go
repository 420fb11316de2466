// Command generate writes the sample workbook the README's walk-through
// submits: 14 sensors, one reading a minute for 3,000 minutes, 42,000
// rows. Run it from the repository root:
//
//	go run ./examples/sample/generate -o examples/sample/energy.xlsx
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/industrial-data/jobmanager/examples/sample/energy"
)

func main() {
	out := flag.String("o", "examples/sample/energy.xlsx", "file to write")
	minutes := flag.Int("minutes", 3000, "minutes of readings per sensor")
	seed := flag.Uint64("seed", 1, "seed of the made-up readings")
	flag.Parse()

	if err := write(*out, *minutes, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}

func write(path string, minutes int, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}

	if err := energy.Write(f, minutes, seed); err != nil {
		f.Close()
		return err
	}

	return f.Close()
}
