package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/vmconv/vmconv/batch"
)

// newBatchObserver shows a batch's progress on w: bars on a terminal,
// one plain line per event elsewhere (a CI log). The function returned
// ends the display.
func newBatchObserver(w io.Writer, n int) (batch.Observer, func()) {
	if !isTerminal(w) {
		return &lineObserver{w: w}, func() {}
	}
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(60), mpb.WithAutoRefresh(), mpb.WithRefreshRate(200*time.Millisecond))
	total := p.AddBar(int64(n), mpb.BarPriority(1<<30),
		mpb.PrependDecorators(decor.Name("total "), decor.CountersNoUnit("%d / %d VMs", decor.WCSyncSpace)),
		mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO, decor.WCSyncSpace)))
	o := &barObserver{p: p, total: total, bars: map[*batch.Job]*mpb.Bar{}}
	return o, func() {
		total.Abort(false)
		p.Wait()
	}
}

// lineObserver prints one line per event.
type lineObserver struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *lineObserver) printf(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, format, args...)
}

func (o *lineObserver) Started(j *batch.Job) {
	o.printf("%s: converting %s to %s\n", j.Name, j.Source, j.Output)
}

func (o *lineObserver) Progress(*batch.Job, int64, int64) {}

func (o *lineObserver) Converted(j *batch.Job, r *batch.Result) {
	o.printf("%s: converted %s in %.1f s\n", j.Name, humanBytes(r.VirtualBytes), r.ConvertSeconds)
}

func (o *lineObserver) Finished(j *batch.Job, r *batch.Result) {
	switch {
	case r.State == batch.Skipped:
		o.printf("%s: skipped (done before; source and options unchanged)\n", j.Name)
	case r.Verify == "pass":
		what := r.VerifyMarker
		if what == "" {
			what = r.VerifyReason
		}
		o.printf("%s: verify passed (%s after %d s)\n", j.Name, what, r.BootMS/1000)
	case r.State == batch.Failed || r.State == batch.Cancelled:
		o.printf("%s: %s: %s\n", j.Name, r.State, r.Error)
	}
}

// barObserver draws a bar per running VM and a total bar.
type barObserver struct {
	mu    sync.Mutex
	p     *mpb.Progress
	total *mpb.Bar
	bars  map[*batch.Job]*mpb.Bar
}

func (o *barObserver) Started(j *batch.Job) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bars[j] = o.p.AddBar(0, mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(j.Name+" ", decor.WCSyncSpaceR), decor.Percentage(decor.WCSyncSpace)),
		mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"),
			decor.AverageSpeed(decor.SizeB1024(0), " % .1f", decor.WCSyncSpace)))
}

func (o *barObserver) Progress(j *batch.Job, done, total int64) {
	o.mu.Lock()
	b := o.bars[j]
	o.mu.Unlock()
	if b != nil {
		b.SetTotal(total, false)
		b.SetCurrent(done)
	}
}

func (o *barObserver) Converted(*batch.Job, *batch.Result) {}

func (o *barObserver) Finished(j *batch.Job, r *batch.Result) {
	o.mu.Lock()
	b := o.bars[j]
	delete(o.bars, j)
	o.mu.Unlock()
	if b != nil {
		b.SetTotal(-1, true)
		if !b.Completed() {
			b.Abort(true)
		}
	}
	o.total.Increment()
	if !r.OK() {
		o.p.Write([]byte(fmt.Sprintf("%s: %s: %s\n", j.Name, r.State, r.Error)))
	}
}

// humanBytes renders a size as "1.2 GiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
