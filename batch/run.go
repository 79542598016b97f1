package batch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DiskDigest is the content digest of one disk of an output.
type DiskDigest struct {
	ID     string `json:"id"`
	Digest string `json:"digest"`
}

// ConvertResult is what a conversion reports.
type ConvertResult struct {
	Disks        []DiskDigest
	BytesRead    int64 // read from the source disks
	BytesWritten int64 // the output's allocated size on the host
	VirtualBytes int64 // the disks' virtual size
}

// VerifyResult is a boot verification's verdict.
type VerifyResult struct {
	Pass   bool
	Reason string
	Marker string // what the console showed to pass, e.g. "login:"
	BootMS int64
}

// Funcs are the operations a batch runs for each VM.
type Funcs struct {
	// Convert writes j.Output from j.Source and commits it; force allows
	// replacing an output the journal knows. workers is the copy engine's
	// worker count; progress receives the bytes done over all disks.
	Convert func(ctx context.Context, j *Job, force bool, workers int, progress func(done, total int64)) (ConvertResult, error)
	// Verify boots j.Output.
	Verify func(ctx context.Context, j *Job) (VerifyResult, error)
}

// Observer hears of each VM's progress; methods are called concurrently.
type Observer interface {
	Started(j *Job)
	Progress(j *Job, done, total int64)
	Converted(j *Job, r *Result)
	Finished(j *Job, r *Result)
}

// Config is one batch run.
type Config struct {
	Jobs     []*Job
	Parallel int  // VMs at once (at least 1)
	Workers  int  // copy workers per VM (at least 1)
	FailFast bool // start no VM after the first failure
	Force    bool // replace outputs the journal does not know
	Funcs    Funcs
	Observer Observer
	// Record, when set, receives each VM's result as it finishes (in
	// finishing order), e.g. to write the JSON-lines report.
	Record func(*Result) error
}

// Result is one VM's outcome: a record of the JSON-lines report.
type Result struct {
	Name           string       `json:"name"`
	Source         string       `json:"source"`
	Target         string       `json:"target"`
	Output         string       `json:"output"`
	State          string       `json:"state"`
	Disks          []DiskDigest `json:"disks"`
	BytesRead      int64        `json:"bytes_read"`
	BytesWritten   int64        `json:"bytes_written"`
	VirtualBytes   int64        `json:"virtual_bytes"`
	ConvertSeconds float64      `json:"convert_seconds"`
	VerifySeconds  float64      `json:"verify_seconds"`
	Verify         string       `json:"verify"` // pass, fail, or "" when not verified
	VerifyReason   string       `json:"verify_reason,omitempty"`
	VerifyMarker   string       `json:"verify_marker,omitempty"`
	BootMS         int64        `json:"boot_ms,omitempty"`
	Error          string       `json:"error,omitempty"`
}

// OK reports whether the VM needs nothing more.
func (r *Result) OK() bool { return r.State == Done || r.State == Skipped }

// Run runs every job and returns their results in plan order.
func Run(ctx context.Context, cfg Config) ([]*Result, error) {
	journals := map[string]*Journal{}
	for _, j := range cfg.Jobs {
		if _, ok := journals[j.OutDir]; ok {
			continue
		}
		if err := os.MkdirAll(j.OutDir, 0o755); err != nil {
			return nil, fmt.Errorf("out %s: %w", j.OutDir, err)
		}
		jr, err := OpenJournal(j.OutDir)
		if err != nil {
			return nil, err
		}
		defer jr.Close()
		journals[j.OutDir] = jr
	}
	results := make([]*Result, len(cfg.Jobs))
	var (
		mu       sync.Mutex
		failed   bool
		recErr   error
		wg       sync.WaitGroup
		next     = make(chan int)
		workers  = max(cfg.Parallel, 1)
		lead     = storeLead(cfg.Jobs, workers)
		leadDone = make(chan struct{})
	)
	finish := func(k int, r *Result) {
		mu.Lock()
		defer mu.Unlock()
		results[k] = r
		if !r.OK() {
			failed = true
		}
		if cfg.Record != nil && recErr == nil {
			recErr = cfg.Record(r)
		}
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				j := cfg.Jobs[k]
				mu.Lock()
				stop := failed && cfg.FailFast || ctx.Err() != nil
				mu.Unlock()
				var r *Result
				if stop {
					r = newResult(j)
					r.State, r.Error = Cancelled, "not started: an earlier VM failed (--fail-fast) or the batch was interrupted"
					if ctx.Err() == nil {
						r.Error = "not started: an earlier VM failed (--fail-fast)"
					}
				} else {
					copyWorkers := max(cfg.Workers, 1)
					if k == lead {
						copyWorkers *= workers // alone: all the cores
					}
					r = runJob(ctx, cfg, journals[j.OutDir], j, copyWorkers)
				}
				if cfg.Observer != nil {
					cfg.Observer.Finished(j, r)
				}
				finish(k, r)
				if k == lead {
					close(leadDone)
				}
			}
		}()
	}
	// The lead VM runs alone, with every copy worker; then the rest.
	if lead >= 0 {
		next <- lead
		<-leadDone
	}
	for k := range cfg.Jobs {
		if k != lead {
			next <- k
		}
	}
	close(next)
	wg.Wait()
	return results, recErr
}

// storeLead picks the VM to run alone before the others: the first of a
// chunk store shared by two VMs or more. A fleet cloned from one template
// shares most chunks; VMs started together would each compress and write
// the template's chunks before any of them has stored one, and run alone
// the first stores them once for all the others to find. -1 when there is
// no such VM or nothing runs in parallel.
func storeLead(jobs []*Job, parallel int) int {
	if parallel < 2 {
		return -1
	}
	first := map[string]int{}
	for k, j := range jobs {
		if j.Store == "" {
			continue
		}
		if f, seen := first[j.Store]; seen {
			return f
		}
		first[j.Store] = k
	}
	return -1
}

func newResult(j *Job) *Result {
	return &Result{Name: j.Name, Source: j.Source, Target: j.Format, Output: j.Output, Disks: []DiskDigest{}}
}

// runJob takes one VM through its states, each recorded in the journal
// before the next begins.
func runJob(ctx context.Context, cfg Config, jr *Journal, j *Job, workers int) *Result {
	r := newResult(j)
	rec := JournalRecord{Name: j.Name, Output: j.journalKey(), Options: OptionsHash(j)}
	fail := func(state string, err error) *Result {
		r.State, r.Error = state, err.Error()
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			r.State = Cancelled
		}
		rec.State, rec.Error = r.State, r.Error
		if rec.Identity != "" {
			jr.Append(rec) // best effort: the VM is redone either way
		}
		return r
	}
	id, err := Identity(j.Source)
	if err != nil {
		return fail(Failed, err)
	}
	rec.Identity = id
	last, known := jr.Last(rec.Output)
	if known && last.State == Done && last.Identity == id && last.Options == rec.Options {
		if _, err := os.Stat(j.Output); err == nil {
			r.State, r.Disks = Skipped, append(r.Disks, last.Disks...)
			return r
		}
	}
	if err := cleanTemps(j); err != nil {
		return fail(Failed, err)
	}
	if err := step(jr, &rec, Started); err != nil {
		return fail(Failed, err)
	}
	if cfg.Observer != nil {
		cfg.Observer.Started(j)
	}
	var progress func(done, total int64)
	if cfg.Observer != nil {
		progress = func(done, total int64) { cfg.Observer.Progress(j, done, total) }
	}
	t0 := time.Now()
	cr, err := cfg.Funcs.Convert(ctx, j, known || cfg.Force, workers, progress)
	r.ConvertSeconds = time.Since(t0).Seconds()
	if err != nil {
		return fail(Failed, err)
	}
	r.Disks, r.BytesRead, r.BytesWritten, r.VirtualBytes = cr.Disks, cr.BytesRead, cr.BytesWritten, cr.VirtualBytes
	rec.Disks = cr.Disks
	// The output was renamed into place; make that durable before the
	// journal says so.
	if err := syncDir(filepath.Dir(j.Artifact)); err != nil {
		return fail(Failed, fmt.Errorf("sync %s: %w", j.OutDir, err))
	}
	if err := step(jr, &rec, Converted); err != nil {
		return fail(Failed, err)
	}
	if cfg.Observer != nil {
		cfg.Observer.Converted(j, r)
	}
	if j.Verify {
		if err := verifyJob(ctx, cfg, jr, j, r, &rec); err != nil {
			return fail(Failed, err)
		}
	}
	if err := step(jr, &rec, Done); err != nil {
		return fail(Failed, err)
	}
	r.State = Done
	return r
}

func verifyJob(ctx context.Context, cfg Config, jr *Journal, j *Job, r *Result, rec *JournalRecord) error {
	t0 := time.Now()
	vr, err := cfg.Funcs.Verify(ctx, j)
	r.VerifySeconds = time.Since(t0).Seconds()
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	r.VerifyReason, r.VerifyMarker, r.BootMS = vr.Reason, vr.Marker, vr.BootMS
	if !vr.Pass {
		r.Verify = "fail"
		return fmt.Errorf("verify failed: %s", vr.Reason)
	}
	r.Verify = "pass"
	return step(jr, rec, Verified)
}

func step(jr *Journal, rec *JournalRecord, state string) error {
	rec.State, rec.Time = state, time.Time{}
	return jr.Append(*rec)
}

// journalKey names the job's output in the journal: relative to the output
// directory, so a rerun from another working directory still finds it.
func (j *Job) journalKey() string {
	if rel, err := filepath.Rel(j.OutDir, j.Output); err == nil {
		return rel
	}
	return j.Output
}
