package batch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeFuncs stand in for convert and verify: convert writes the source's
// bytes to the output; sources named in fail fail.
type fakeFuncs struct {
	mu        sync.Mutex
	converted map[string]int
	fail      map[string]bool
	verifyBad map[string]bool
}

func newFake() *fakeFuncs {
	return &fakeFuncs{converted: map[string]int{}, fail: map[string]bool{}, verifyBad: map[string]bool{}}
}

func (f *fakeFuncs) funcs() Funcs {
	return Funcs{
		Convert: func(ctx context.Context, j *Job, force bool, workers int, progress func(int64, int64)) (ConvertResult, error) {
			f.mu.Lock()
			f.converted[j.Name]++
			bad := f.fail[j.Name]
			f.mu.Unlock()
			if bad {
				return ConvertResult{}, fmt.Errorf("%s: not a VM", j.Source)
			}
			b, err := os.ReadFile(j.Source)
			if err != nil {
				return ConvertResult{}, err
			}
			if err := os.WriteFile(j.Output, b, 0o644); err != nil {
				return ConvertResult{}, err
			}
			return ConvertResult{Disks: []DiskDigest{{ID: "disk0", Digest: "d-" + j.Name}}, BytesRead: int64(len(b))}, nil
		},
		Verify: func(ctx context.Context, j *Job) (VerifyResult, error) {
			if f.verifyBad[j.Name] {
				return VerifyResult{Pass: false, Reason: "kernel panic"}, nil
			}
			return VerifyResult{Pass: true, Reason: "login prompt", BootMS: 1200}, nil
		},
	}
}

// fleet writes n small sources and returns their jobs.
func fleet(t *testing.T, dir string, n int, verify bool) []*Job {
	t.Helper()
	var plan strings.Builder
	fmt.Fprintf(&plan, "defaults: {to: raw, out: %s, verify: %v}\nvms:\n", filepath.Join(dir, "out"), verify)
	for k := range n {
		src := filepath.Join(dir, fmt.Sprintf("src%d", k), fmt.Sprintf("vm%d.img", k))
		require.NoError(t, os.MkdirAll(filepath.Dir(src), 0o755))
		require.NoError(t, os.WriteFile(src, []byte(fmt.Sprint("disk of vm", k)), 0o644))
		fmt.Fprintf(&plan, "  - source: %s\n", src)
	}
	p, err := Parse("plan.yaml", []byte(plan.String()))
	require.NoError(t, err)
	jobs, err := p.Jobs()
	require.NoError(t, err)
	return jobs
}

func states(rs []*Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name+"="+r.State)
	}
	return out
}

func TestRerun(t *testing.T) {
	dir := t.TempDir()
	jobs := fleet(t, dir, 4, true)
	f := newFake()
	f.fail["vm1"] = true
	f.verifyBad["vm2"] = true
	cfg := Config{Jobs: jobs, Parallel: 2, Funcs: f.funcs()}

	rs, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"vm0=done", "vm1=failed", "vm2=failed", "vm3=done"}, states(rs))
	assert.Equal(t, "pass", rs[0].Verify)
	assert.Equal(t, "fail", rs[2].Verify)
	assert.Contains(t, rs[1].Error, "not a VM")
	assert.Contains(t, rs[2].Error, "verify failed: kernel panic")

	// Fixed, rerun: only what failed is redone.
	f.fail["vm1"], f.verifyBad["vm2"] = false, false
	rs, err = Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"vm0=skipped", "vm1=done", "vm2=done", "vm3=skipped"}, states(rs))
	assert.Equal(t, map[string]int{"vm0": 1, "vm1": 2, "vm2": 2, "vm3": 1}, f.converted)
	assert.Equal(t, []DiskDigest{{ID: "disk0", Digest: "d-vm0"}}, rs[0].Disks, "a skipped VM reports the digests of its run")

	// A changed source, a changed option and a lost output are redone.
	time.Sleep(10 * time.Millisecond) // a new modification time
	require.NoError(t, os.WriteFile(jobs[0].Source, []byte("new content"), 0o644))
	jobs[1].Opts["compress"] = "yes"
	require.NoError(t, os.Remove(jobs[2].Output))
	rs, err = Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"vm0=done", "vm1=done", "vm2=done", "vm3=skipped"}, states(rs))
	got, err := os.ReadFile(jobs[0].Output)
	require.NoError(t, err)
	assert.Equal(t, "new content", string(got))
}

func TestFailFast(t *testing.T) {
	jobs := fleet(t, t.TempDir(), 4, false)
	f := newFake()
	f.fail["vm1"] = true
	rs, err := Run(context.Background(), Config{Jobs: jobs, Parallel: 1, FailFast: true, Funcs: f.funcs()})
	require.NoError(t, err)
	assert.Equal(t, []string{"vm0=done", "vm1=failed", "vm2=cancelled", "vm3=cancelled"}, states(rs))
	assert.Zero(t, f.converted["vm2"], "no VM starts after a failure")

	// Without it every VM is attempted.
	rs, err = Run(context.Background(), Config{Jobs: jobs, Parallel: 1, Funcs: f.funcs()})
	require.NoError(t, err)
	assert.Equal(t, []string{"vm0=skipped", "vm1=failed", "vm2=done", "vm3=done"}, states(rs))
}

func TestInterrupted(t *testing.T) {
	jobs := fleet(t, t.TempDir(), 2, false)
	f := newFake()
	ctx, cancel := context.WithCancel(context.Background())
	fn := f.funcs()
	convert := fn.Convert
	fn.Convert = func(c context.Context, j *Job, force bool, w int, p func(int64, int64)) (ConvertResult, error) {
		cancel()
		if _, err := convert(c, j, force, w, p); err != nil {
			return ConvertResult{}, err
		}
		return ConvertResult{}, fmt.Errorf("copy: %w", c.Err())
	}
	rs, err := Run(ctx, Config{Jobs: jobs, Parallel: 1, Funcs: fn})
	require.NoError(t, err)
	assert.Equal(t, []string{"vm0=cancelled", "vm1=cancelled"}, states(rs))
	jr, err := OpenJournal(jobs[0].OutDir)
	require.NoError(t, err)
	defer jr.Close()
	last, ok := jr.Last(jobs[0].journalKey())
	require.True(t, ok)
	assert.Equal(t, Cancelled, last.State)
}

func TestStaleTempsOfThePlanAreRemoved(t *testing.T) {
	dir := t.TempDir()
	jobs := fleet(t, dir, 1, false)
	out := jobs[0].OutDir
	require.NoError(t, os.MkdirAll(out, 0o755))
	mine := filepath.Join(out, ".vm0.raw.tmp-123")
	other := filepath.Join(out, ".vm01.raw.tmp-456") // another plan's, or another shard's
	require.NoError(t, os.WriteFile(mine, nil, 0o644))
	require.NoError(t, os.WriteFile(other, nil, 0o644))
	_, err := Run(context.Background(), Config{Jobs: jobs, Parallel: 1, Funcs: newFake().funcs()})
	require.NoError(t, err)
	assert.NoFileExists(t, mine)
	assert.FileExists(t, other)
}

func TestJournalIgnoresATornLine(t *testing.T) {
	dir := t.TempDir()
	jr, err := OpenJournal(dir)
	require.NoError(t, err)
	require.NoError(t, jr.Append(JournalRecord{Name: "a", Output: "a.xva", State: Done, Identity: "i"}))
	require.NoError(t, jr.Close())
	fh, err := os.OpenFile(filepath.Join(dir, JournalDir, "journal.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fh.WriteString(`{"name":"a","output":"a.xva","state":"sta`)
	require.NoError(t, err)
	require.NoError(t, fh.Close())

	jr, err = OpenJournal(dir)
	require.NoError(t, err)
	defer jr.Close()
	last, ok := jr.Last("a.xva")
	require.True(t, ok)
	assert.Equal(t, Done, last.State)
}

func TestExistingOutputUnknownToTheJournal(t *testing.T) {
	jobs := fleet(t, t.TempDir(), 1, false)
	var forced []bool
	fn := Funcs{Convert: func(ctx context.Context, j *Job, force bool, w int, p func(int64, int64)) (ConvertResult, error) {
		forced = append(forced, force)
		return ConvertResult{}, errors.New("stop")
	}}
	for range 2 {
		_, err := Run(context.Background(), Config{Jobs: jobs, Parallel: 1, Funcs: fn})
		require.NoError(t, err)
	}
	_, err := Run(context.Background(), Config{Jobs: fleet(t, t.TempDir(), 1, false), Parallel: 1, Force: true, Funcs: fn})
	require.NoError(t, err)
	// The first run knew nothing of the output: an existing file there is
	// someone else's. The second has the journal's record of it; the third
	// knows nothing but has --force.
	assert.Equal(t, []bool{false, true, true}, forced)
}

func TestStoreLeadRunsAlone(t *testing.T) {
	jobs := fleet(t, t.TempDir(), 4, false)
	for _, j := range jobs[1:] {
		j.Store = "shared"
	}
	var mu sync.Mutex
	running, most := 0, map[string]int{}
	workers := map[string]int{}
	fn := Funcs{Convert: func(ctx context.Context, j *Job, force bool, w int, p func(int64, int64)) (ConvertResult, error) {
		mu.Lock()
		running++
		most[j.Name] = running
		workers[j.Name] = w
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return ConvertResult{}, os.WriteFile(j.Output, nil, 0o644)
	}}
	rs, err := Run(context.Background(), Config{Jobs: jobs, Parallel: 2, Workers: 1, Funcs: fn})
	require.NoError(t, err)
	assert.Equal(t, []string{"vm0=done", "vm1=done", "vm2=done", "vm3=done"}, states(rs))
	// vm1 is the first VM of the shared store: alone, with both workers.
	assert.Equal(t, 1, most["vm1"])
	assert.Equal(t, 2, workers["vm1"])
	assert.Equal(t, 1, workers["vm2"])
	assert.Equal(t, 2, max(most["vm0"], most["vm2"], most["vm3"]), "the others run two at a time")
	assert.Equal(t, -1, storeLead(jobs, 1), "nothing in parallel: no lead")
	assert.Equal(t, -1, storeLead(jobs[:2], 2), "a store no other VM shares: no lead")
}
