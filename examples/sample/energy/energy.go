// Package energy makes sample workbooks of machine energy readings, like
// the spreadsheets users upload: one row per reading, with a timestamp,
// the sensor, the value and its unit. The readings are made up but
// plausible: each sensor has its own base load, a daily cycle and noise,
// and the same seed always gives the same workbook.
package energy

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/xuri/excelize/v2"
)

// Sensors are the metering points of the sample plant.
var Sensors = []string{
	"ec-generator", "ec-gesamt", "ec-prozess", "ec-roboter", "roboter-ausgabe",
	"roboter-eingabe", "transport-gesamt", "wm1-gesamt", "wm1-heizung-reinigen",
	"wm1-heizung-trocknung", "wm2-gesamt", "wm2-heizung-reinigen",
	"wm2-heizung-trocknung", "wm2-vakuumpumpe",
}

// Start is the time of the first reading.
var Start = time.Date(2020, 11, 16, 0, 0, 0, 0, time.UTC)

// Write writes a workbook with one reading per sensor per minute for the
// given number of minutes.
func Write(w io.Writer, minutes int, seed uint64) error {
	book := excelize.NewFile()
	defer book.Close()

	const sheet = "Sheet1"
	sw, err := book.NewStreamWriter(sheet)
	if err != nil {
		return fmt.Errorf("stream writer: %w", err)
	}

	if err := sw.SetRow("A1", []any{"timestamp", "sensor", "value", "unit"}); err != nil {
		return err
	}

	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	base := make([]float64, len(Sensors))
	for i := range base {
		base[i] = 2 + rng.Float64()*40
	}

	row := 2
	for m := range minutes {
		at := Start.Add(time.Duration(m) * time.Minute)
		day := 2 * math.Pi * float64(at.Hour()*60+at.Minute()) / (24 * 60)

		for i, sensor := range Sensors {
			value := base[i] * (1 + 0.3*math.Sin(day-float64(i)) + 0.05*rng.NormFloat64())
			cell, _ := excelize.CoordinatesToCellName(1, row)
			err := sw.SetRow(cell, []any{
				at.Format("2006-01-02 15:04:05"), sensor, math.Round(max(value, 0)*1000) / 1000, "kW",
			})
			if err != nil {
				return err
			}

			row++
		}
	}

	if err := sw.Flush(); err != nil {
		return err
	}

	return book.Write(w)
}
