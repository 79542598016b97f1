package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vmconv/vmconv/batch"
	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/vmm/verdict"
)

type batchFlags struct {
	from, to, out, engine, store string
	verify                       bool
	fix                          bool
	memory                       int64
	timeout                      time.Duration
	parallel                     int
	report, junit                string
	keepGoing, failFast, force   bool
	shard                        string
	shards                       int
}

func newBatchCmd() *cobra.Command {
	var f batchFlags
	cmd := &cobra.Command{
		Use:   "batch PLAN | batch --from GLOB --to FORMAT --out DIR",
		Short: "Convert (and verify) a fleet of VMs; resumable, reported as JSON lines and JUnit",
		Long: `Convert every VM of a plan (YAML or JSON), up to -j at once, each exactly as
"vmconv convert" (and "vmconv verify" when verify is on) would. A journal in
OUT/.vmconv-batch/ records each VM's progress: a rerun of the same plan skips
the VMs done with the same source and options, and redoes the rest.

Exit codes: 0 every VM succeeded (or was done before), 1 a VM failed or the
plan is bad, 2 usage error.`,
		Args: argsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return runBatch(cmd, args, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "convert every file matching this glob (instead of a plan)")
	fl.StringVar(&f.to, "to", "", "target format (with --from; default for a plan's VMs)")
	fl.StringVar(&f.out, "out", "", "output directory (with --from; default for a plan's VMs)")
	fl.BoolVar(&f.verify, "verify", false, "boot-verify each converted VM (with --from)")
	fl.BoolVar(&f.fix, "fix", false, "fix each guest for its target first, as convert --fix (with --from)")
	fl.StringVar(&f.engine, "engine", "", "verify engine: builtin, qemu or auto (with --from)")
	fl.StringVar(&f.store, "store", "", "chunk store shared between bundles (with --from)")
	fl.Int64Var(&f.memory, "memory", 0, "memory in MiB for each verify (with --from)")
	fl.DurationVar(&f.timeout, "timeout", 0, "verify timeout per VM (with --from; default 5m)")
	fl.IntVarP(&f.parallel, "jobs", "j", 0, "VMs at once (default: the cores, and what memory the verifies need allows)")
	fl.StringVar(&f.report, "report", "", "write a JSON-lines report here (one record per VM)")
	fl.StringVar(&f.junit, "junit", "", "write a JUnit XML report here")
	fl.BoolVar(&f.keepGoing, "keep-going", true, "attempt every VM whatever fails")
	fl.BoolVar(&f.failFast, "fail-fast", false, "start no VM after the first failure")
	fl.BoolVar(&f.force, "force", false, "replace outputs that exist though the journal does not know them")
	fl.StringVar(&f.shard, "shard", "", "run only shard I/N of the plan (VM k belongs to shard k mod N)")
	fl.IntVar(&f.shards, "shards", 0, "number of shards when the index comes from JOB_COMPLETION_INDEX (else VMCONV_SHARDS)")
	return cmd
}

func runBatch(cmd *cobra.Command, args []string, f *batchFlags) error {
	jobs, shard, err := batchJobs(cmd, args, f)
	if err != nil {
		return err
	}
	parallel := f.parallel
	if parallel < 0 {
		return usagef("-j: want a positive number, got %d", parallel)
	}
	if parallel == 0 {
		parallel = batch.DefaultParallel(jobs)
	}
	obs, endObs := newBatchObserver(cmd.ErrOrStderr(), len(jobs))
	var rep *batch.JSONLines
	if f.report != "" {
		rf, err := os.Create(f.report)
		if err != nil {
			return fmt.Errorf("--report: %w", err)
		}
		defer rf.Close()
		rep = batch.NewJSONLines(rf)
	}
	cfg := batch.Config{
		Jobs: jobs, Parallel: parallel, Workers: batch.WorkersPerVM(parallel),
		FailFast: f.failFast || !f.keepGoing, Force: f.force, Observer: obs,
		Funcs: batch.Funcs{Convert: batchConvert, Verify: batchVerify},
	}
	if rep != nil {
		cfg.Record = rep.Write
	}
	results, err := batch.Run(cmd.Context(), cfg)
	endObs()
	if err != nil {
		return err
	}
	if f.junit != "" {
		if err := writeJUnitFile(f.junit, results); err != nil {
			return err
		}
	}
	counts := map[string]int{}
	for _, r := range results {
		counts[r.State]++
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "batch: shard %s: %d VMs: %d done, %d skipped, %d failed, %d cancelled\n", shard,
		len(results), counts[batch.Done], counts[batch.Skipped], counts[batch.Failed], counts[batch.Cancelled])
	if counts[batch.Done]+counts[batch.Skipped] != len(results) {
		return exitError{1}
	}
	return nil
}

// batchJobs reads the plan (or builds one from --from) and takes this
// shard's share of it.
func batchJobs(cmd *cobra.Command, args []string, f *batchFlags) ([]*batch.Job, batch.Shard, error) {
	defaults := batch.Options{To: f.to, Out: f.out, Engine: f.engine, Store: f.store, Memory: f.memory}
	if f.timeout > 0 {
		defaults.Timeout = f.timeout.String()
	}
	var (
		plan *batch.Plan
		err  error
	)
	switch {
	case f.from != "" && len(args) > 0:
		return nil, batch.Shard{}, usagef("give a plan file or --from, not both")
	case f.from != "":
		if f.to == "" || f.out == "" {
			return nil, batch.Shard{}, usagef("--from needs --to FORMAT and --out DIR")
		}
		verify, fix := f.verify, f.fix
		defaults.Verify, defaults.Fix = &verify, &fix
		plan, err = batch.FromGlob(f.from, defaults)
	case len(args) == 1:
		plan, err = batch.ParseFile(args[0])
		if err == nil {
			applyFlagDefaults(cmd, plan, defaults, f.verify)
		}
	default:
		return nil, batch.Shard{}, usagef("batch takes a plan file, or --from GLOB --to FORMAT --out DIR")
	}
	if err != nil {
		return nil, batch.Shard{}, err
	}
	jobs, err := plan.Jobs()
	if err != nil {
		return nil, batch.Shard{}, err
	}
	shard := batch.All
	if f.shard != "" {
		if shard, err = batch.ParseShard(f.shard); err != nil {
			return nil, shard, usageError{err}
		}
	} else if s, ok, err := batch.ShardFromEnv(f.shards); ok {
		if err != nil {
			return nil, shard, usageError{err}
		}
		shard = s
	}
	return shard.Select(jobs), shard, nil
}

// applyFlagDefaults lets flags given with a plan fill what its defaults
// leave unset.
func applyFlagDefaults(cmd *cobra.Command, p *batch.Plan, d batch.Options, verify bool) {
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&p.Defaults.To, d.To)
	fill(&p.Defaults.Out, d.Out)
	fill(&p.Defaults.Engine, d.Engine)
	fill(&p.Defaults.Store, d.Store)
	fill(&p.Defaults.Timeout, d.Timeout)
	if p.Defaults.Memory == 0 {
		p.Defaults.Memory = d.Memory
	}
	if p.Defaults.Verify == nil && cmd.Flags().Changed("verify") {
		p.Defaults.Verify = &verify
	}
}

// batchConvert converts one VM through convert's own code path, then
// reads the output's disk digests as `vmconv digest` prints them.
func batchConvert(ctx context.Context, j *batch.Job, force bool, workers int, progress func(done, total int64)) (batch.ConvertResult, error) {
	opts := maps.Clone(j.Opts)
	if j.Store != "" {
		opts["store"] = j.Store
	}
	var read atomic.Int64
	var res batch.ConvertResult
	// The copy engine reports each disk from zero; add up the disks before.
	var base, lastDone, lastTotal int64
	prog := func(done, total int64) {
		if done < lastDone {
			base += lastTotal
		}
		lastDone, lastTotal = done, total
		res.VirtualBytes = base + total
		if progress != nil {
			progress(base+done, base+total)
		}
	}
	req := convertRequest{src: j.Source, dst: j.Output, outFmt: j.Format, opts: opts, force: force,
		copy: disk.CopyOptions{Workers: workers, Progress: prog}, read: &read}
	convert := convertPath
	if j.Fix {
		convert = func(ctx context.Context, req convertRequest) error {
			return fixPath(ctx, req, fixFlags{engine: j.Engine, memory: j.MemoryMiB, timeout: fixTimeout})
		}
	}
	if err := convert(ctx, req); err != nil {
		return res, err
	}
	res.BytesRead = read.Load()
	res.BytesWritten = treeSize(j.Artifact)
	disks, err := outputDigests(ctx, j.Output)
	if err != nil {
		return res, fmt.Errorf("%s: digest: %w", j.Output, err)
	}
	res.Disks = disks
	return res, nil
}

// outputDigests are the content digests of an output's disks.
func outputDigests(ctx context.Context, path string) ([]batch.DiskDigest, error) {
	f, err := formats.Detect(path)
	if err != nil {
		return nil, err
	}
	out := []batch.DiskDigest{}
	if !f.IsVM() {
		img, err := f.OpenImage(path)
		if err != nil {
			return nil, err
		}
		defer img.Close()
		sum, err := disk.Digest(ctx, img, disk.CopyOptions{})
		if err != nil {
			return nil, err
		}
		return append(out, batch.DiskDigest{ID: filepath.Base(path), Digest: sum}), nil
	}
	vm, err := formats.OpenVM(path, f)
	if err != nil {
		return nil, err
	}
	defer vm.Close()
	disks, err := reportDisks(ctx, vm, f)
	if err != nil {
		return nil, err
	}
	for _, d := range disks {
		out = append(out, batch.DiskDigest{ID: d.ID, Digest: d.Digest})
	}
	return out, nil
}

// treeSize is the space a file or a directory tree takes on the host.
func treeSize(path string) int64 {
	var total int64
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			total += actualSize(p)
		}
		return nil
	})
	return total
}

// batchVerify boots one converted VM through verify's own code path.
func batchVerify(ctx context.Context, j *batch.Job) (batch.VerifyResult, error) {
	timeout := j.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	rep, err := verifyPath(ctx, j.Output, verifyRequest{boot: bootFlags{memory: j.MemoryMiB}, timeout: timeout, engine: j.Engine})
	if err != nil {
		return batch.VerifyResult{}, err
	}
	return batch.VerifyResult{Pass: rep.Result == verdict.Pass, Reason: rep.Reason, Marker: rep.Marker, BootMS: rep.BootMS}, nil
}

func writeJUnitFile(path string, results []*batch.Result) error {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--junit: %w", err)
	}
	if err := batch.WriteJUnit(fh, results); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
