// Package batch converts a fleet of VMs in one run: it reads a plan (YAML
// or JSON), resolves each VM to a job with its output path, schedules the
// jobs in parallel, records each state change in a crash-safe journal so
// that a rerun resumes, and reports the outcome as JSON lines and JUnit XML.
//
// The conversion and verification themselves are not here: the caller
// passes them in (Funcs), so a batch runs exactly what `vmconv convert` and
// `vmconv verify` run.
package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vmconv/vmconv/formats"
)

// Options are the per-VM settings; a VM's own override the plan's defaults.
type Options struct {
	To      string            `yaml:"to" json:"to,omitempty"`
	Out     string            `yaml:"out" json:"out,omitempty"`
	Verify  *bool             `yaml:"verify" json:"verify,omitempty"`
	Fix     *bool             `yaml:"fix" json:"fix,omitempty"`
	Engine  string            `yaml:"engine" json:"engine,omitempty"`
	Store   string            `yaml:"store" json:"store,omitempty"`
	Memory  int64             `yaml:"memory" json:"memory,omitempty"`
	Timeout string            `yaml:"timeout" json:"timeout,omitempty"`
	Options map[string]string `yaml:"options" json:"options,omitempty"`
}

// Entry is one VM of a plan.
type Entry struct {
	Source  string `yaml:"source"`
	Name    string `yaml:"name"`
	Options `yaml:",inline"`
	// Line is where the entry starts in the plan file (0 when not from a file).
	Line int `yaml:"-"`
}

// Plan is a parsed plan file.
type Plan struct {
	File     string  `yaml:"-"`
	Defaults Options `yaml:"defaults"`
	VMs      []Entry `yaml:"vms"`
}

// Job is one VM resolved: every option settled and its output path chosen.
type Job struct {
	Index     int               `json:"-"`
	Name      string            `json:"name"`
	Source    string            `json:"source"`
	Format    string            `json:"to"`
	OutDir    string            `json:"out"`
	Output    string            `json:"output"`
	Artifact  string            `json:"-"`
	Store     string            `json:"store,omitempty"`
	Opts      map[string]string `json:"options,omitempty"`
	Verify    bool              `json:"verify"`
	Fix       bool              `json:"fix,omitempty"` // as convert --fix: fixed in the guest's own kernel first
	Engine    string            `json:"engine,omitempty"`
	MemoryMiB int64             `json:"memory,omitempty"`
	Timeout   time.Duration     `json:"timeout,omitempty"`
	Line      int               `json:"-"`
}

// ParseFile reads a plan file.
func ParseFile(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return Parse(path, b)
}

var unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)

// Parse reads a plan from its bytes. JSON (content starting with '{') is
// checked as JSON first, so its syntax errors are JSON's, then decoded as
// YAML (JSON is a subset), which gives every error a line number.
func Parse(name string, b []byte) (*Plan, error) {
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' && !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s: line %d: invalid JSON: %v", name, lineOf(b, se.Offset), err)
		}
		return nil, fmt.Errorf("%s: invalid JSON: %v", name, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	p := &Plan{File: name}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(p); err != nil {
		return nil, planDecodeError(name, err)
	}
	p.File = name
	setLines(&root, p)
	if len(p.VMs) == 0 {
		return nil, fmt.Errorf("%s: no VMs (want a list under \"vms\")", name)
	}
	return p, nil
}

// planDecodeError rewrites the YAML decoder's errors as "FILE: line N: …".
func planDecodeError(name string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var msgs []string
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			e = fmt.Sprintf("line %s: unknown field %q", m[1], m[2])
		}
		msgs = append(msgs, e)
	}
	return fmt.Errorf("%s: %s", name, strings.Join(msgs, "; "))
}

// setLines records where each VM entry starts.
func setLines(root *yaml.Node, p *Plan) {
	doc := root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value != "vms" || doc.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for k, n := range doc.Content[i+1].Content {
			if k < len(p.VMs) {
				p.VMs[k].Line = n.Line
			}
		}
	}
}

func lineOf(b []byte, off int64) int {
	off = min(max(off, 0), int64(len(b)))
	return bytes.Count(b[:off], []byte("\n")) + 1
}

// FromGlob builds a plan of every file matching pattern, in sorted order.
func FromGlob(pattern string, defaults Options) (*Plan, error) {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("--from %q: %w", pattern, err)
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("--from %q: no file matches", pattern)
	}
	p := &Plan{File: "--from " + pattern, Defaults: defaults}
	for _, m := range matches {
		p.VMs = append(p.VMs, Entry{Source: m})
	}
	return p, nil
}

// where names a VM entry in errors.
func (p *Plan) where(k int) string {
	if l := p.VMs[k].Line; l > 0 {
		return fmt.Sprintf("%s: line %d", p.File, l)
	}
	return fmt.Sprintf("%s: VM %d", p.File, k+1)
}

// Jobs resolves every VM of the plan. Two VMs writing the same output are an
// error, found before anything runs.
func (p *Plan) Jobs() ([]*Job, error) {
	var jobs []*Job
	seen := map[string]int{}
	for k, e := range p.VMs {
		j, err := p.resolve(k, e)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[j.Output]; dup {
			return nil, fmt.Errorf("%s: VM %q writes %s, as does the VM at %s", p.where(k), j.Name, j.Output, p.where(prev))
		}
		seen[j.Output] = k
		jobs = append(jobs, j)
	}
	return jobs, nil
}

func (p *Plan) resolve(k int, e Entry) (*Job, error) {
	d := p.Defaults
	o := e.Options
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	if e.Source == "" {
		return nil, fmt.Errorf("%s: source: missing", p.where(k))
	}
	j := &Job{
		Index: k, Line: e.Line, Source: e.Source, Name: e.Name,
		Format: pick(o.To, d.To), OutDir: pick(o.Out, d.Out),
		Engine: pick(o.Engine, d.Engine), Store: pick(o.Store, d.Store),
		MemoryMiB: d.Memory,
	}
	if o.Memory != 0 {
		j.MemoryMiB = o.Memory
	}
	if j.MemoryMiB < 0 {
		return nil, fmt.Errorf("%s: memory: %d MiB is negative", p.where(k), j.MemoryMiB)
	}
	if o.Verify != nil {
		j.Verify = *o.Verify
	} else if d.Verify != nil {
		j.Verify = *d.Verify
	}
	if o.Fix != nil {
		j.Fix = *o.Fix
	} else if d.Fix != nil {
		j.Fix = *d.Fix
	}
	if t := pick(o.Timeout, d.Timeout); t != "" {
		dur, err := time.ParseDuration(t)
		if err != nil || dur <= 0 {
			return nil, fmt.Errorf("%s: timeout: want a duration such as 5m, got %q", p.where(k), t)
		}
		j.Timeout = dur
	}
	j.Opts = map[string]string{}
	for kk, v := range d.Options {
		j.Opts[kk] = v
	}
	for kk, v := range o.Options {
		j.Opts[kk] = v
	}
	switch j.Engine {
	case "", "auto", "builtin", "qemu":
	default:
		return nil, fmt.Errorf("%s: engine: want builtin, qemu or auto, got %q", p.where(k), j.Engine)
	}
	if j.Format == "" {
		return nil, fmt.Errorf("%s: to: missing (set it on the VM or under defaults)", p.where(k))
	}
	f, err := formats.Lookup(j.Format)
	if err != nil {
		return nil, fmt.Errorf("%s: to: %v", p.where(k), err)
	}
	if f.WriteVM == nil && f.CreateImage == nil || len(f.Exts) == 0 {
		return nil, fmt.Errorf("%s: to: format %s cannot be written", p.where(k), f.Name)
	}
	j.Format = f.Name
	if j.OutDir == "" {
		return nil, fmt.Errorf("%s: out: missing (set it on the VM or under defaults)", p.where(k))
	}
	if j.Name == "" {
		base := filepath.Base(filepath.Clean(e.Source))
		j.Name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	if j.Name == "" || strings.ContainsAny(j.Name, "/\x00") || j.Name == "." || j.Name == ".." {
		return nil, fmt.Errorf("%s: name: %q cannot name an output file", p.where(k), j.Name)
	}
	j.Output, j.Artifact = outputPath(j.OutDir, j.Name, f)
	return j, nil
}

// singleArtifact lists the target formats written as one file or one
// directory. Others (a .vmx, an xl.cfg, an .ovf, a VMDK with extents) write
// files beside their target, so their VM gets a directory of its own: then
// every file of one VM, and every temporary file it leaves, is known.
var singleArtifact = map[string]bool{"xva": true, "vmb": true, "ova": true, "raw": true, "qcow2": true, "vpc": true, "vhdx": true, "vdi": true}

// outputPath returns the output's path and the artifact holding all of it:
// the output itself, or the VM's own directory.
func outputPath(out, name string, f *formats.Format) (output, artifact string) {
	file := name + f.Exts[0]
	if singleArtifact[f.Name] {
		p := filepath.Join(out, file)
		return p, p
	}
	return filepath.Join(out, name, file), filepath.Join(out, name)
}
