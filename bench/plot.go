package bench

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Size of the image of WritePlot.
const (
	plotWidth  = 9 * vg.Inch
	plotHeight = 8 * vg.Inch
)

// percentileTicks label the percentile axis, whose values are 1/(1-q):
// each tick one more nine.
var percentileTicks = plot.ConstantTicks{
	{Value: 1, Label: "0%"}, {Value: 2, Label: "50%"}, {Value: 10, Label: "90%"}, {Value: 100, Label: "99%"},
	{Value: 1e3, Label: "99.9%"}, {Value: 1e4, Label: "99.99%"}, {Value: 1e5, Label: "99.999%"}, {Value: 1e6, Label: "99.9999%"},
}

// ErrNothingToPlot is returned by WritePlot for a report without
// latencies (idle).
var ErrNothingToPlot = errors.New("bench: no latencies to plot")

// WritePlot draws the latencies of r into the PNG file path: above, each
// operation's p50, p99 and maximum over the run, an interval at a time;
// below, each operation's latency by percentile (HdrHistogram's plot:
// every step to the right is one more nine).
func (r *Report) WritePlot(path string) error {
	ops := r.ops()
	if len(ops) == 0 {
		return ErrNothingToPlot
	}
	over := plot.New()
	over.Title.Text = fmt.Sprintf("%s -> %s: latency over time", r.Scenario, r.Target)
	over.X.Label.Text = "seconds since the start"
	over.Y.Label.Text = "latency (ms)"
	over.Y.Scale, over.Y.Tick.Marker = plot.LogScale{}, plot.TickerFunc(logTicks125)
	over.Legend.Top, over.Legend.Left = true, true

	curve := plot.New()
	curve.Title.Text = "latency by percentile"
	if r.Rate > 0 {
		curve.Title.Text += fmt.Sprintf(" (open loop, %g/s per connection or session, from the scheduled send)", r.Rate)
	}
	curve.X.Label.Text = "percentile"
	curve.X.Scale, curve.X.Tick.Marker = plot.LogScale{}, percentileTicks
	curve.Y.Label.Text = "latency (ms)"
	curve.Y.Scale, curve.Y.Tick.Marker = plot.LogScale{}, plot.TickerFunc(logTicks125)
	curve.Legend.Top, curve.Legend.Left = true, true

	drawn := 0
	for i, op := range ops {
		if op.hist == nil || op.hist.TotalCount() == 0 {
			continue
		}
		for j, series := range []struct {
			name string
			pick func(TimelinePoint) time.Duration
		}{
			{"p50", func(p TimelinePoint) time.Duration { return p.P50 }},
			{"p99", func(p TimelinePoint) time.Duration { return p.P99 }},
			{"max", func(p TimelinePoint) time.Duration { return p.Max }},
		} {
			xys := make(plotter.XYs, 0, len(op.Timeline))
			for _, p := range op.Timeline {
				xys = append(xys, plotter.XY{X: p.At.Seconds(), Y: ms(series.pick(p))})
			}
			if err := addLine(over, op.name+" "+series.name, xys, i, j); err != nil {
				return err
			}
		}
		if err := addLine(curve, op.name, percentileCurve(op.OpReport), i, 0); err != nil {
			return err
		}
		drawn++
	}
	if drawn == 0 {
		return ErrNothingToPlot
	}
	img := vgimg.New(plotWidth, plotHeight)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4),
		PadLeft: vg.Points(4), PadRight: vg.Points(12), PadY: vg.Points(16)}
	canvases := plot.Align([][]*plot.Plot{{over}, {curve}}, tiles, dc)
	over.Draw(canvases[0][0])
	curve.Draw(canvases[1][0])

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("--plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--plot %s: %w", path, err)
	}
	return nil
}

// addLine adds the line of xys to p, coloured for operation i and dashed
// for series j.
func addLine(p *plot.Plot, name string, xys plotter.XYs, i, j int) error {
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	l.Color = plotutil.Color(i)
	l.Dashes = plotutil.Dashes(j)
	l.Width = vg.Points(1.2)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// percentileCurve is the latency of op at percentiles q, as points
// (1/(1-q), ms): twenty a decade of 1/(1-q), up to the last the
// operations resolve, then the maximum.
func percentileCurve(op *OpReport) plotter.XYs {
	h := op.hist
	n := float64(h.TotalCount())
	var xys plotter.XYs
	for k := 0; ; k++ {
		x := math.Pow(10, float64(k)/20)
		if x >= n {
			break
		}
		q := 100 * (1 - 1/x)
		xys = append(xys, plotter.XY{X: x, Y: ms(usDuration(h.ValueAtQuantile(q)))})
	}
	return append(xys, plotter.XY{X: max(n, 1.01), Y: ms(usDuration(h.Max()))})
}

// logTicks125 marks a logarithmic axis at 1, 2 and 5 of each decade
// (labelled) and at the other whole multiples (not).
func logTicks125(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for decade := math.Pow10(int(math.Floor(math.Log10(lo)))); decade <= hi; decade *= 10 {
		for m := 1; m < 10; m++ {
			v := decade * float64(m)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	if !slices.ContainsFunc(ticks, func(t plot.Tick) bool { return t.Label != "" }) {
		for i := range ticks {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'g', 3, 64)
		}
	}
	return ticks
}

// ms is d in milliseconds, at least a microsecond: the axes are
// logarithmic.
func ms(d time.Duration) float64 {
	return max(float64(d)/float64(time.Millisecond), 0.001)
}
