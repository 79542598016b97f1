package deploy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vmconv/vmconv/batch"
	"github.com/vmconv/vmconv/deploy"
)

// The shipped kustomizations: the base, and the overlay that adds /dev/kvm.
var kustomizations = []string{"kubernetes", "kubernetes/kvm"}

func TestShippedManifestsPass(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			m, err := deploy.Load(dir)
			require.NoError(t, err)
			assert.NoError(t, deploy.Check(m))
		})
	}
}

// TestShippedJob pins what the README promises about the Job, beyond what
// Check requires of any Job.
func TestShippedJob(t *testing.T) {
	m, err := deploy.Load("kubernetes")
	require.NoError(t, err)
	require.Len(t, m.Jobs, 1)
	job := m.Jobs[0]
	c := job.Spec.Template.Spec.Containers[0]

	assert.Equal(t, []string{
		"batch", "--shards", "4",
		"--report", "/out/report-$(JOB_COMPLETION_INDEX).jsonl",
		"--junit", "/out/junit-$(JOB_COMPLETION_INDEX).xml",
		"/plan/plan.yaml",
	}, c.Args)
	assert.Equal(t, int32(4), *job.Spec.Completions)
	require.NotNil(t, job.Spec.BackoffLimitPerIndex)
	require.NotNil(t, job.Spec.MaxFailedIndexes)
	assert.LessOrEqual(t, *job.Spec.MaxFailedIndexes, *job.Spec.Completions)
	assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	assert.True(t, *job.Spec.Template.Spec.SecurityContext.RunAsNonRoot)

	// Exit 2 (usage error) fails the index at once; no other exit code does.
	var failIndex []int32
	for _, r := range job.Spec.PodFailurePolicy.Rules {
		if r.Action == batchv1.PodFailurePolicyActionFailIndex {
			failIndex = append(failIndex, r.OnExitCodes.Values...)
		}
	}
	assert.Equal(t, []int32{2}, failIndex)

	// The base asks for no KVM device: it must schedule on any node.
	_, kvm := c.Resources.Limits["devices.kubevirt.io/kvm"]
	assert.False(t, kvm)
}

// The overlay adds the KVM device to the one container and keeps everything
// else of the base (a strategic merge, not a replacement of the list).
func TestKVMOverlay(t *testing.T) {
	m, err := deploy.Load("kubernetes/kvm")
	require.NoError(t, err)
	require.Len(t, m.Jobs, 1)
	cs := m.Jobs[0].Spec.Template.Spec.Containers
	require.Len(t, cs, 1)
	one := resource.MustParse("1")
	for _, rl := range []corev1.ResourceList{cs[0].Resources.Requests, cs[0].Resources.Limits} {
		q, ok := rl["devices.kubevirt.io/kvm"]
		require.True(t, ok)
		assert.Zero(t, q.Cmp(one))
	}
	assert.Equal(t, "3Gi", func() string { q := cs[0].Resources.Limits[corev1.ResourceMemory]; return q.String() }())
	assert.NotEmpty(t, cs[0].Args)
	assert.Len(t, m.Secrets, 1)
	assert.Len(t, m.ConfigMaps, 1)
}

func TestShippedPlan(t *testing.T) {
	m, err := deploy.Load("kubernetes")
	require.NoError(t, err)
	cm := m.ConfigMaps["vmconv-plan"]
	require.NotNil(t, cm)
	p, err := deploy.ParsePlan([]byte(cm.Data["plan.yaml"]))
	require.NoError(t, err)
	assert.Equal(t, "xva", p.Defaults.To)
	assert.Equal(t, "/out", p.Defaults.Out)
	assert.Equal(t, "auto", p.Defaults.Engine)
	assert.True(t, strings.HasPrefix(p.Defaults.Store, "s3://"))
	assert.NotEmpty(t, p.VMs)
}

// edit is one textual change to a shipped manifest: old must occur exactly
// once in file, so that a change to the manifests cannot turn a case into a
// test of nothing.
type edit struct {
	file, old, new string
}

func TestBrokenManifestsRejected(t *testing.T) {
	tests := []struct {
		name  string
		edits []edit
		// want is the error Load or Check must return (errors.Is).
		want error
		// msg is a part of the message that names the fault.
		msg string
	}{
		{
			name:  "typo'd field",
			edits: []edit{{"job.yaml", "  completionMode: Indexed", "  completionMod: Indexed"}},
			want:  deploy.ErrDecode,
			msg:   `unknown field "spec.completionMod"`,
		},
		{
			name:  "typo'd field in a volume",
			edits: []edit{{"job.yaml", "claimName: vmconv-out", "claimname: vmconv-out"}},
			want:  deploy.ErrDecode,
			msg:   "claimname",
		},
		{
			name:  "duplicate key",
			edits: []edit{{"job.yaml", "  parallelism: 4\n", "  parallelism: 4\n  parallelism: 3\n"}},
			want:  deploy.ErrDecode,
			msg:   "parallelism",
		},
		{
			name:  "wrong type",
			edits: []edit{{"job.yaml", "  completions: 4", "  completions: four"}},
			want:  deploy.ErrDecode,
		},
		{
			name:  "unknown kind",
			edits: []edit{{"secret-s3.example.yaml", "kind: Secret", "kind: Secrets"}},
			want:  deploy.ErrDecode,
			msg:   `kind "Secrets"`,
		},
		{
			name:  "completions differ from shards",
			edits: []edit{{"job.yaml", "  completions: 4", "  completions: 3"}},
			want:  deploy.ErrShardCount,
			msg:   "spec.completions is 3, --shards is 4",
		},
		{
			name:  "parallelism differs from shards",
			edits: []edit{{"job.yaml", "  parallelism: 4", "  parallelism: 2"}},
			want:  deploy.ErrShardCount,
			msg:   "spec.parallelism is 2",
		},
		{
			name: "fixed shard",
			edits: []edit{{"job.yaml", `            - --shards
            - "4"`, `            - --shard
            - "0/4"`}},
			want: deploy.ErrShardCount,
			msg:  "--shard fixes one share",
		},
		{
			name:  "not Indexed",
			edits: []edit{{"job.yaml", "  completionMode: Indexed", "  completionMode: NonIndexed"}},
			want:  deploy.ErrNotIndexed,
		},
		{
			name:  "no backoffLimitPerIndex",
			edits: []edit{{"job.yaml", "  backoffLimitPerIndex: 2\n", ""}},
			want:  deploy.ErrRetryPolicy,
			msg:   "backoffLimitPerIndex is not set",
		},
		{
			name:  "disruptions counted as failures",
			edits: []edit{{"job.yaml", "      - action: Ignore", "      - action: Count"}},
			want:  deploy.ErrRetryPolicy,
			msg:   "DisruptionTarget",
		},
		{
			name:  "missing secret key",
			edits: []edit{{"secret-s3.example.yaml", "  AWS_REGION: us-east-1", "  AWS_DEFAULT_REGION: us-east-1"}},
			want:  deploy.ErrMissingRef,
			msg:   `key "AWS_REGION" of Secret/vmconv-s3`,
		},
		{
			name:  "missing secret",
			edits: []edit{{"secret-s3.example.yaml", "  name: vmconv-s3", "  name: vmconv-s4"}},
			want:  deploy.ErrMissingRef,
			msg:   "Secret/vmconv-s3, which no manifest defines",
		},
		{
			name:  "missing plan key",
			edits: []edit{{"configmap-plan.yaml", "  plan.yaml: |", "  fleet.yaml: |"}},
			want:  deploy.ErrMissingRef,
			msg:   `key "plan.yaml" of ConfigMap/vmconv-plan`,
		},
		{
			name:  "undefined $(VAR) in args",
			edits: []edit{{"job.yaml", "/out/junit-$(JOB_COMPLETION_INDEX).xml", "/out/junit-$(JOB_INDEX).xml"}},
			want:  deploy.ErrEnvRef,
			msg:   "$(JOB_INDEX)",
		},
		{
			name:  "report not on a mount",
			edits: []edit{{"job.yaml", "/out/report-$(JOB_COMPLETION_INDEX).jsonl", "/reports/report-$(JOB_COMPLETION_INDEX).jsonl"}},
			want:  deploy.ErrMountPath,
			msg:   "--report /reports/",
		},
		{
			name:  "output volume mounted elsewhere",
			edits: []edit{{"job.yaml", "              mountPath: /out\n", "              mountPath: /output\n"}},
			want:  deploy.ErrMountPath,
			msg:   "not under a writable volumeMount",
		},
		{
			name:  "plan not projected where args say",
			edits: []edit{{"job.yaml", "                path: plan.yaml", "                path: fleet.yaml"}},
			want:  deploy.ErrMountPath,
			msg:   `no item at path "plan.yaml"`,
		},
		{
			name:  "plan field misspelt",
			edits: []edit{{"configmap-plan.yaml", "      verify: true", "      verfy: true"}},
			want:  deploy.ErrPlan,
			msg:   "verfy",
		},
		{
			name:  "plan engine unknown",
			edits: []edit{{"configmap-plan.yaml", "      engine: auto", "      engine: kvm"}},
			want:  deploy.ErrPlan,
			msg:   `engine "kvm"`,
		},
		{
			name:  "plan store scheme unknown",
			edits: []edit{{"configmap-plan.yaml", "store: s3://", "store: gs://"}},
			want:  deploy.ErrPlan,
			msg:   `scheme "gs"`,
		},
		{
			name:  "S3 store without credentials",
			edits: []edit{{"job.yaml", "            - name: AWS_ACCESS_KEY_ID\n", "            - name: AWS_ACCESS_KEY\n"}},
			want:  deploy.ErrStoreCredentials,
			msg:   "AWS_ACCESS_KEY_ID",
		},
		{
			name:  "memory limit below the guest",
			edits: []edit{{"configmap-plan.yaml", "      memory: 1024", "      memory: 4096"}},
			want:  deploy.ErrResources,
			msg:   "4096 MiB",
		},
		{
			name:  "image not in kustomization",
			edits: []edit{{"kustomization.yaml", "  - name: vmconv-qemu", "  - name: vmconv"}},
			want:  deploy.ErrImage,
			msg:   `runs "vmconv-qemu"`,
		},
		{
			name:  "mount of a volume the pod lacks",
			edits: []edit{{"job.yaml", "            - name: tmp\n", "            - name: scratch\n"}},
			want:  deploy.ErrInvalid,
			msg:   `mounts volume "scratch"`,
		},
		{
			name:  "secret key not a valid key",
			edits: []edit{{"secret-s3.example.yaml", "  AWS_REGION: us-east-1", "  AWS_REGION: us-east-1\n  aws region: x"}},
			want:  deploy.ErrInvalid,
			msg:   `key "aws region"`,
		},
		{
			name:  "failure policy names another container",
			edits: []edit{{"job.yaml", "          containerName: vmconv", "          containerName: converter"}},
			want:  deploy.ErrInvalid,
			msg:   `container "converter"`,
		},
		{
			name: "job name not a DNS subdomain",
			edits: []edit{
				{"job.yaml", "  name: vmconv-batch", "  name: vmconv_batch"},
				{"kvm/job-kvm.yaml", "  name: vmconv-batch", "  name: vmconv_batch"},
			},
			want: deploy.ErrInvalid,
			msg:  `Job name "vmconv_batch"`,
		},
		{
			name:  "memory request above its limit",
			edits: []edit{{"job.yaml", "              memory: 2Gi", "              memory: 4Gi"}},
			want:  deploy.ErrInvalid,
			msg:   "memory request 4Gi exceeds its limit 3Gi",
		},
		{
			name:  "KVM device request without a matching limit",
			edits: []edit{{"kvm/job-kvm.yaml", "            limits:\n              devices.kubevirt.io/kvm: \"1\"", "            limits:\n              devices.kubevirt.io/kvm: \"2\""}},
			want:  deploy.ErrInvalid,
			msg:   "devices.kubevirt.io/kvm needs a limit equal to its request",
		},
		{
			name:  "overlay patch with a typo",
			edits: []edit{{"kvm/job-kvm.yaml", "          resources:", "          resource:"}},
			want:  deploy.ErrDecode,
			msg:   "resource",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyTree(t, "kubernetes")
			for _, e := range tc.edits {
				apply(t, filepath.Join(dir, e.file), e)
			}
			// The overlay includes the base, so it sees every edit.
			err := loadAndCheck(filepath.Join(dir, "kvm"))
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// TestManifestVariantsAccepted: equivalent spellings of the contract that
// Check must not refuse.
func TestManifestVariantsAccepted(t *testing.T) {
	tests := []struct {
		name  string
		edits []edit
	}{
		{
			name: "shard count from VMCONV_SHARDS",
			edits: []edit{
				{"job.yaml", "            - --shards\n            - \"4\"\n", ""},
				{"job.yaml", "          env:\n", "          env:\n            - name: VMCONV_SHARDS\n              value: \"4\"\n"},
			},
		},
		{
			name:  "inline --shards=N",
			edits: []edit{{"job.yaml", "            - --shards\n            - \"4\"\n", "            - --shards=4\n"}},
		},
		{
			name: "credentials through envFrom",
			edits: []edit{{"job.yaml", `            - name: AWS_ACCESS_KEY_ID
              valueFrom:
                secretKeyRef:
                  name: vmconv-s3
                  key: AWS_ACCESS_KEY_ID
            - name: AWS_SECRET_ACCESS_KEY
              valueFrom:
                secretKeyRef:
                  name: vmconv-s3
                  key: AWS_SECRET_ACCESS_KEY
            - name: AWS_REGION
              valueFrom:
                secretKeyRef:
                  name: vmconv-s3
                  key: AWS_REGION
`, ""}, {"job.yaml", "          resources:\n            # One", "          envFrom:\n            - secretRef:\n                name: vmconv-s3\n          resources:\n            # One"}},
		},
		{
			name:  "index from the pod label",
			edits: []edit{{"job.yaml", "metadata.annotations['batch", "metadata.labels['batch"}},
		},
		{
			name:  "tagged image",
			edits: []edit{{"job.yaml", "image: vmconv-qemu\n", "image: vmconv-qemu:v1.2.3\n"}},
		},
		{
			name: "image by digest on a registry with a port",
			edits: []edit{
				{"job.yaml", "image: vmconv-qemu\n", "image: registry.local:5000/vmconv-qemu@sha256:0123\n"},
				{"kustomization.yaml", "  - name: vmconv-qemu", "  - name: registry.local:5000/vmconv-qemu"},
			},
		},
		{
			name: "no verify: no memory floor",
			edits: []edit{
				{"configmap-plan.yaml", "      verify: true\n", "      verify: false\n"},
				{"configmap-plan.yaml", "      memory: 1024\n", "      memory: 65536\n"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyTree(t, "kubernetes")
			for _, e := range tc.edits {
				apply(t, filepath.Join(dir, e.file), e)
			}
			assert.NoError(t, loadAndCheck(dir))
			assert.NoError(t, loadAndCheck(filepath.Join(dir, "kvm")))
		})
	}
}

func loadAndCheck(dir string) error {
	m, err := deploy.Load(dir)
	if err != nil {
		return err
	}
	return deploy.Check(m)
}

func apply(t *testing.T, path string, e edit) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(raw), e.old), "%s must hold %q exactly once", e.file, e.old)
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(raw), e.old, e.new, 1)), 0o644))
}

// copyTree copies src into a new temporary directory and returns it.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), raw, 0o644)
	})
	require.NoError(t, err)
	return dst
}

// The shipped plan is one vmconv batch itself accepts: the same parser and
// the same resolution of every VM's output and options that a pod runs.
func TestShippedPlanParsesInBatch(t *testing.T) {
	m, err := deploy.Load("kubernetes")
	require.NoError(t, err)
	cm := m.ConfigMaps["vmconv-plan"]
	require.NotNil(t, cm)
	p, err := batch.Parse("plan.yaml", []byte(cm.Data["plan.yaml"]))
	require.NoError(t, err)
	jobs, err := p.Jobs()
	require.NoError(t, err)
	ours, err := deploy.ParsePlan([]byte(cm.Data["plan.yaml"]))
	require.NoError(t, err)
	assert.Len(t, jobs, len(ours.VMs))
}
