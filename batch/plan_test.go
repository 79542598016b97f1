package batch

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		plan    string
		wantErr string
		check   func(t *testing.T, jobs []*Job)
	}{
		{
			name: "yaml defaults and overrides",
			plan: `defaults: {to: xva, out: /out, verify: true, engine: auto, store: s3://bucket/prefix, memory: 512}
vms:
  - source: /vms/web/web.vmx
  - {source: /vms/db/db.vmx, to: vmb, verify: false, name: db-bundle, memory: 2048}
`,
			check: func(t *testing.T, jobs []*Job) {
				require.Len(t, jobs, 2)
				assert.Equal(t, "web", jobs[0].Name)
				assert.Equal(t, "/out/web.xva", jobs[0].Output)
				assert.True(t, jobs[0].Verify)
				assert.Equal(t, int64(512), jobs[0].MemoryMiB)
				assert.Equal(t, "s3://bucket/prefix", jobs[0].Store)
				assert.Equal(t, "db-bundle", jobs[1].Name)
				assert.Equal(t, "/out/db-bundle.vmb", jobs[1].Output)
				assert.False(t, jobs[1].Verify)
				assert.Equal(t, int64(2048), jobs[1].MemoryMiB)
				assert.Equal(t, 3, jobs[0].Line)
				assert.Equal(t, 4, jobs[1].Line)
			},
		},
		{
			name: "json",
			plan: "{\n\t\"defaults\": {\"to\": \"vmx\", \"out\": \"o\", \"timeout\": \"2m\", \"options\": {\"subformat\": \"streamOptimized\"}},\n\t\"vms\": [{\"source\": \"a.xva\"}]\n}\n",
			check: func(t *testing.T, jobs []*Job) {
				require.Len(t, jobs, 1)
				// A .vmx writes its disks beside it: the VM gets a directory.
				assert.Equal(t, filepath.Join("o", "a", "a.vmx"), jobs[0].Output)
				assert.Equal(t, filepath.Join("o", "a"), jobs[0].Artifact)
				assert.Equal(t, 2*time.Minute, jobs[0].Timeout)
				assert.Equal(t, map[string]string{"subformat": "streamOptimized"}, jobs[0].Opts)
			},
		},
		{
			name: "fix from defaults, off for one VM",
			plan: "defaults: {to: xva, out: o, fix: true}\nvms:\n  - source: a.vmx\n  - {source: b.vmx, fix: false}\n",
			check: func(t *testing.T, jobs []*Job) {
				require.Len(t, jobs, 2)
				assert.True(t, jobs[0].Fix)
				assert.False(t, jobs[1].Fix)
				// A job fixed is not the job converted as it is: a rerun redoes it.
				unfixed := *jobs[0]
				unfixed.Fix = false
				assert.NotEqual(t, OptionsHash(jobs[0]), OptionsHash(&unfixed))
			},
		},
		{name: "unknown field in a VM", plan: "defaults: {to: xva, out: o}\nvms:\n  - source: a.vmx\n    colour: blue\n", wantErr: `p.yaml: line 4: unknown field "colour"`},
		{name: "unknown field in defaults", plan: "defaults:\n  to: xva\n  outdir: o\nvms: [{source: a}]\n", wantErr: `p.yaml: line 3: unknown field "outdir"`},
		{name: "unknown top-level field", plan: "vm: []\n", wantErr: `p.yaml: line 1: unknown field "vm"`},
		{name: "unknown field in JSON", plan: "{\n  \"vms\": [\n    {\"source\": \"a\", \"to\": \"xva\", \"out\": \"o\",\n     \"verfiy\": true}\n  ]\n}\n", wantErr: `p.yaml: line 4: unknown field "verfiy"`},
		{name: "json syntax", plan: "{\"vms\": [\n{\"source\": \"a\",}\n]}", wantErr: "p.yaml: line 2: invalid JSON"},
		{name: "yaml syntax", plan: "vms: [\n", wantErr: "p.yaml: "},
		{name: "no vms", plan: "defaults: {to: xva}\n", wantErr: "p.yaml: no VMs"},
		{name: "missing source", plan: "defaults: {to: xva, out: o}\nvms:\n  - name: x\n", wantErr: "p.yaml: line 3: source: missing"},
		{name: "missing to", plan: "vms:\n  - {source: a, out: o}\n", wantErr: "p.yaml: line 2: to: missing"},
		{name: "missing out", plan: "vms:\n  - {source: a, to: xva}\n", wantErr: "p.yaml: line 2: out: missing"},
		{name: "unknown format", plan: "vms:\n  - {source: a, to: floppy, out: o}\n", wantErr: "p.yaml: line 2: to: "},
		{name: "bad engine", plan: "vms:\n  - {source: a, to: xva, out: o, engine: warp}\n", wantErr: "p.yaml: line 2: engine: want builtin, qemu or auto"},
		{name: "bad timeout", plan: "vms:\n  - {source: a, to: xva, out: o, timeout: soon}\n", wantErr: "p.yaml: line 2: timeout: "},
		{name: "wrong type", plan: "vms:\n  - {source: a, to: xva, out: o, memory: lots}\n", wantErr: "p.yaml: line 2: "},
		{name: "bad name", plan: "vms:\n  - {source: a, to: xva, out: o, name: a/b}\n", wantErr: "p.yaml: line 2: name: "},
		{
			name:    "two VMs, one output",
			plan:    "defaults: {to: xva, out: o}\nvms:\n  - source: /a/web.vmx\n  - source: /b/web.vmx\n",
			wantErr: "p.yaml: line 4: VM \"web\" writes o/web.xva, as does the VM at p.yaml: line 3",
		},
		{
			name: "same name, other format",
			plan: "defaults: {to: xva, out: o}\nvms:\n  - source: /a/web.vmx\n  - {source: /b/web.vmx, to: vmb}\n",
			check: func(t *testing.T, jobs []*Job) {
				assert.NotEqual(t, jobs[0].Output, jobs[1].Output)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tc.plan))
			var jobs []*Job
			if err == nil {
				jobs, err = p.Jobs()
			}
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, jobs)
		})
	}
}

func TestOptionsHash(t *testing.T) {
	p, err := Parse("p", []byte("defaults: {to: xva, out: o}\nvms: [{source: a}, {source: a, out: o2}, {source: a, verify: true, out: o3}]\n"))
	require.NoError(t, err)
	jobs, err := p.Jobs()
	require.NoError(t, err)
	again, err := p.Jobs()
	require.NoError(t, err)
	assert.Equal(t, OptionsHash(jobs[0]), OptionsHash(again[0]), "the same job, the same hash")
	assert.NotEqual(t, OptionsHash(jobs[0]), OptionsHash(jobs[1]))
	assert.NotEqual(t, OptionsHash(jobs[1]), OptionsHash(jobs[2]))
}

// FuzzParse: no plan makes the parser panic, and every error names the file.
func FuzzParse(f *testing.F) {
	f.Add([]byte("defaults: {to: xva, out: /out, verify: true}\nvms:\n  - source: /vms/web/web.vmx\n  - {source: db.vmx, to: vmb, name: db}\n"))
	f.Add([]byte(`{"defaults": {"to": "vmb", "out": "o"}, "vms": [{"source": "a.xva", "options": {"k": "v"}}]}`))
	f.Add([]byte("vms:\n  - source: a\n    bogus: 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse("plan.yaml", b)
		if err != nil {
			require.Contains(t, err.Error(), "plan.yaml")
			return
		}
		if _, err := p.Jobs(); err != nil {
			require.Contains(t, err.Error(), "plan.yaml")
		}
	})
}
