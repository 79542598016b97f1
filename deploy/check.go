package deploy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The ways a Job can break the `vmconv batch` contract. Check wraps each
// problem it finds in one of these, so callers (and tests) can tell them apart
// with errors.Is.
var (
	ErrNoBatch          = errors.New("no container runs vmconv batch")
	ErrNotIndexed       = errors.New("job is not Indexed")
	ErrShardCount       = errors.New("completions, parallelism and --shards disagree")
	ErrRetryPolicy      = errors.New("retry policy does not fit an Indexed batch")
	ErrMissingRef       = errors.New("reference to an undefined object or key")
	ErrEnvRef           = errors.New("$(VAR) in arguments names no environment variable")
	ErrMountPath        = errors.New("path is not on a suitable volume mount")
	ErrStoreCredentials = errors.New("S3 store without credentials in the environment")
	ErrResources        = errors.New("resources do not fit the plan")
	ErrImage            = errors.New("image is not one the kustomization sets")
)

// completionIndexFields are where the Job controller puts a pod's index: an
// annotation, and since the PodIndexLabel feature also a label. The
// controller adds JOB_COMPLETION_INDEX from one of them unless the
// container defines it already.
var completionIndexFields = []string{
	"metadata.annotations['batch.kubernetes.io/job-completion-index']",
	"metadata.labels['batch.kubernetes.io/job-completion-index']",
}

// memoryOverheadMiB is what a verify run needs beside the guest's RAM:
// QEMU itself, vmconv's bounded window of chunks in flight, page cache slack.
const memoryOverheadMiB = 512

// Check returns every way the manifests in m fail API validation (see
// Validate) or break the batch contract, joined; nil when there is none.
func Check(m *Manifests) error {
	if len(m.Jobs) == 0 {
		return fmt.Errorf("%s: %w: no Job among the resources", m.Dir, ErrNoBatch)
	}
	errs := []error{Validate(m)}
	for _, job := range m.Jobs {
		if err := checkJob(m, job); err != nil {
			errs = append(errs, fmt.Errorf("%s: Job/%s: %w", m.Sources["Job/"+job.Name], job.Name, err))
		}
	}
	return errors.Join(errs...)
}

func checkJob(m *Manifests, job *batchv1.Job) error {
	pod := &job.Spec.Template.Spec
	c, args, err := batchContainer(pod)
	if err != nil {
		return err
	}
	env := envNames(m, c)
	errs := []error{
		checkIndexed(job),
		checkShards(job, c, args),
		checkRetries(job),
		checkRefs(m, pod),
		checkEnv(c, env),
		checkImage(m, c),
	}
	plan, err := planFor(m, pod, c, args)
	errs = append(errs, err)
	if plan != nil {
		errs = append(errs,
			checkPlanMounts(c, plan),
			checkStoreCredentials(plan, env),
			checkResources(c, plan),
		)
	}
	return errors.Join(errs...)
}

// batchArgs are the parts of `vmconv batch`'s command line the checks need.
type batchArgs struct {
	shards      string
	fixedShard  bool // --shard I/N: every pod would take the same share
	report      string
	junit       string
	plan        string
	positionals int
}

// valueFlags are batch's flags that take a value as the next argument.
var valueFlags = map[string]bool{
	"--shards": true, "--shard": true, "--report": true, "--junit": true,
	"--store": true, "--engine": true, "--out": true, "--to": true,
	"--jobs": true, "-j": true, "--timeout": true, "--memory": true,
}

func parseBatchArgs(args []string) batchArgs {
	var b batchArgs
	for i := 0; i < len(args); i++ {
		name, value, inline := strings.Cut(args[i], "=")
		if !strings.HasPrefix(name, "-") {
			b.plan = args[i]
			b.positionals++
			continue
		}
		if !inline && valueFlags[name] && i+1 < len(args) {
			i++
			value = args[i]
		}
		switch name {
		case "--shards":
			b.shards = value
		case "--shard":
			b.fixedShard = true
		case "--report":
			b.report = value
		case "--junit":
			b.junit = value
		}
	}
	return b
}

// batchContainer finds the container whose arguments start with the batch
// subcommand (the image's entrypoint is vmconv).
func batchContainer(pod *corev1.PodSpec) (*corev1.Container, batchArgs, error) {
	for i := range pod.Containers {
		c := &pod.Containers[i]
		argv := append(slices.Clone(c.Command), c.Args...)
		if j := slices.Index(argv, "batch"); j >= 0 {
			return c, parseBatchArgs(argv[j+1:]), nil
		}
	}
	return nil, batchArgs{}, ErrNoBatch
}

func checkIndexed(job *batchv1.Job) error {
	if job.Spec.CompletionMode == nil || *job.Spec.CompletionMode != batchv1.IndexedCompletion {
		return fmt.Errorf("%w: spec.completionMode must be Indexed, so that each pod has a JOB_COMPLETION_INDEX to take its share by", ErrNotIndexed)
	}
	return nil
}

// checkShards: N pods must each take one of N shares, all at once; N is
// --shards, or VMCONV_SHARDS when the flag is absent.
func checkShards(job *batchv1.Job, c *corev1.Container, args batchArgs) error {
	if args.fixedShard {
		return fmt.Errorf("%w: --shard fixes one share for every pod; use --shards N with the completion index", ErrShardCount)
	}
	shards, from := args.shards, "--shards"
	if shards == "" {
		shards, from = envValue(c, "VMCONV_SHARDS"), "VMCONV_SHARDS"
	}
	n, err := strconv.Atoi(shards)
	if err != nil || n < 1 {
		return fmt.Errorf("%w: shard count %s=%q is not a positive integer", ErrShardCount, from, shards)
	}
	completions, parallelism := job.Spec.Completions, job.Spec.Parallelism
	if completions == nil || int(*completions) != n {
		return fmt.Errorf("%w: spec.completions is %s, %s is %d", ErrShardCount, int32String(completions), from, n)
	}
	if parallelism == nil || int(*parallelism) != n {
		return fmt.Errorf("%w: spec.parallelism is %s, %s is %d", ErrShardCount, int32String(parallelism), from, n)
	}
	return nil
}

// checkRetries: retries counted per index, Never restarts (the Job
// controller decides), and disruptions not counted as failures.
func checkRetries(job *batchv1.Job) error {
	spec := job.Spec
	var errs []error
	if spec.BackoffLimitPerIndex == nil {
		errs = append(errs, fmt.Errorf("%w: spec.backoffLimitPerIndex is not set: one failing share would use up the retries of all", ErrRetryPolicy))
	}
	if spec.MaxFailedIndexes != nil && spec.Completions != nil && *spec.MaxFailedIndexes > *spec.Completions {
		errs = append(errs, fmt.Errorf("%w: spec.maxFailedIndexes %d exceeds completions %d", ErrRetryPolicy, *spec.MaxFailedIndexes, *spec.Completions))
	}
	if rp := spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyNever {
		errs = append(errs, fmt.Errorf("%w: restartPolicy is %q; a pod failure policy needs Never", ErrRetryPolicy, rp))
	}
	if !ignoresDisruptions(spec.PodFailurePolicy) {
		errs = append(errs, fmt.Errorf("%w: spec.podFailurePolicy has no Ignore rule for the DisruptionTarget condition: an evicted pod would count as a failed shard", ErrRetryPolicy))
	}
	return errors.Join(errs...)
}

func ignoresDisruptions(p *batchv1.PodFailurePolicy) bool {
	if p == nil {
		return false
	}
	for _, r := range p.Rules {
		if r.Action != batchv1.PodFailurePolicyActionIgnore {
			continue
		}
		for _, cond := range r.OnPodConditions {
			if cond.Type == corev1.DisruptionTarget && cond.Status == corev1.ConditionTrue {
				return true
			}
		}
	}
	return false
}

// checkRefs: every Secret and ConfigMap the pod names, and every key it
// takes from one, is defined in the manifests (unless marked optional).
func checkRefs(m *Manifests, pod *corev1.PodSpec) error {
	var errs []error
	for _, c := range pod.Containers {
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil && !isTrue(r.Optional) {
				errs = append(errs, secretKey(m, r.Name, r.Key, "env "+e.Name))
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !isTrue(r.Optional) {
				errs = append(errs, configMapKey(m, r.Name, r.Key, "env "+e.Name))
			}
		}
		for _, ef := range c.EnvFrom {
			if r := ef.SecretRef; r != nil && !isTrue(r.Optional) {
				errs = append(errs, secretKey(m, r.Name, "", "envFrom"))
			}
			if r := ef.ConfigMapRef; r != nil && !isTrue(r.Optional) {
				errs = append(errs, configMapKey(m, r.Name, "", "envFrom"))
			}
		}
	}
	for _, v := range pod.Volumes {
		if s := v.ConfigMap; s != nil && !isTrue(s.Optional) {
			errs = append(errs, configMapKey(m, s.Name, "", "volume "+v.Name))
			for _, it := range s.Items {
				errs = append(errs, configMapKey(m, s.Name, it.Key, "volume "+v.Name))
			}
		}
		if s := v.Secret; s != nil && !isTrue(s.Optional) {
			errs = append(errs, secretKey(m, s.SecretName, "", "volume "+v.Name))
			for _, it := range s.Items {
				errs = append(errs, secretKey(m, s.SecretName, it.Key, "volume "+v.Name))
			}
		}
	}
	return errors.Join(errs...)
}

// secretKey checks that Secret name exists and, when key is not empty, holds
// key in data or stringData.
func secretKey(m *Manifests, name, key, user string) error {
	s, ok := m.Secrets[name]
	if !ok {
		return fmt.Errorf("%w: %s names Secret/%s, which no manifest defines", ErrMissingRef, user, name)
	}
	if key == "" {
		return nil
	}
	if _, ok := s.Data[key]; ok {
		return nil
	}
	if _, ok := s.StringData[key]; ok {
		return nil
	}
	return fmt.Errorf("%w: %s takes key %q of Secret/%s, which has only %v", ErrMissingRef, user, key, name, secretKeys(s))
}

func configMapKey(m *Manifests, name, key, user string) error {
	cm, ok := m.ConfigMaps[name]
	if !ok {
		return fmt.Errorf("%w: %s names ConfigMap/%s, which no manifest defines", ErrMissingRef, user, name)
	}
	if key == "" {
		return nil
	}
	if _, ok := cm.Data[key]; ok {
		return nil
	}
	if _, ok := cm.BinaryData[key]; ok {
		return nil
	}
	return fmt.Errorf("%w: %s takes key %q of ConfigMap/%s, which has only %v", ErrMissingRef, user, key, name, configMapKeys(cm))
}

var envRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// checkEnv: Kubernetes expands $(VAR) in command and args only for variables
// the container defines; an undefined one is passed on literally, and the
// report of every index would land in one file named "$(VAR)".
func checkEnv(c *corev1.Container, env map[string]bool) error {
	var errs []error
	for _, arg := range append(slices.Clone(c.Command), c.Args...) {
		for _, m := range envRef.FindAllStringSubmatch(arg, -1) {
			if m[0] == "$$" || env[m[1]] {
				continue
			}
			errs = append(errs, fmt.Errorf("%w: %q uses $(%s)", ErrEnvRef, arg, m[1]))
		}
	}
	for _, e := range c.Env {
		if e.Name != "JOB_COMPLETION_INDEX" || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil {
			continue
		}
		if fp := e.ValueFrom.FieldRef.FieldPath; !slices.Contains(completionIndexFields, fp) {
			errs = append(errs, fmt.Errorf("%w: JOB_COMPLETION_INDEX comes from %q, not the completion index (%s)", ErrEnvRef, fp, strings.Join(completionIndexFields, " or ")))
		}
	}
	return errors.Join(errs...)
}

// envNames lists the variables the container has: its env entries and the
// keys of the objects it takes whole with envFrom.
func envNames(m *Manifests, c *corev1.Container) map[string]bool {
	names := map[string]bool{}
	for _, e := range c.Env {
		names[e.Name] = true
	}
	for _, ef := range c.EnvFrom {
		var keys []string
		if r := ef.SecretRef; r != nil && m.Secrets[r.Name] != nil {
			keys = secretKeys(m.Secrets[r.Name])
		}
		if r := ef.ConfigMapRef; r != nil && m.ConfigMaps[r.Name] != nil {
			keys = configMapKeys(m.ConfigMaps[r.Name])
		}
		for _, k := range keys {
			names[ef.Prefix+k] = true
		}
	}
	return names
}

// checkImage: the container's image is the one kustomize rewrites, so that
// `kustomize edit set image` reaches it.
func checkImage(m *Manifests, c *corev1.Container) error {
	name := imageName(c.Image)
	for _, img := range m.Images {
		if img.Name == name {
			return nil
		}
	}
	var names []string
	for _, img := range m.Images {
		names = append(names, img.Name)
	}
	return fmt.Errorf("%w: container %s runs %q; the kustomization's images are %v", ErrImage, c.Name, c.Image, names)
}

// imageName strips the tag and digest from an image reference.
func imageName(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// planFor finds the plan argument's file: it must be on a ConfigMap volume,
// and its key there must parse as a plan. Report and JUnit paths must be on
// writable mounts.
func planFor(m *Manifests, pod *corev1.PodSpec, c *corev1.Container, args batchArgs) (*Plan, error) {
	var errs []error
	for _, out := range [][2]string{{"--report", args.report}, {"--junit", args.junit}} {
		flag, p := out[0], out[1]
		if p == "" {
			continue
		}
		if mnt := mountFor(c, p); mnt == nil || mnt.ReadOnly {
			errs = append(errs, fmt.Errorf("%w: %s %s is not under a writable volumeMount", ErrMountPath, flag, p))
		}
	}
	if args.positionals != 1 {
		return nil, errors.Join(append(errs, fmt.Errorf("%w: batch takes one PLAN argument, the arguments have %d", ErrPlan, args.positionals))...)
	}
	raw, err := planFile(m, pod, c, args.plan)
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	plan, err := ParsePlan(raw)
	if err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("plan %s: %w", args.plan, err))...)
	}
	return plan, errors.Join(errs...)
}

// planFile resolves a path in the container to the ConfigMap key behind it.
func planFile(m *Manifests, pod *corev1.PodSpec, c *corev1.Container, p string) ([]byte, error) {
	mnt := mountFor(c, p)
	if mnt == nil {
		return nil, fmt.Errorf("%w: plan %s is not under any volumeMount", ErrMountPath, p)
	}
	vol := volumeNamed(pod, mnt.Name)
	if vol == nil {
		return nil, fmt.Errorf("%w: volumeMount %s names volume %q, which the pod does not have", ErrMissingRef, mnt.MountPath, mnt.Name)
	}
	if vol.ConfigMap == nil {
		return nil, fmt.Errorf("%w: plan %s is on volume %q, not a ConfigMap volume", ErrPlan, p, vol.Name)
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, mnt.MountPath), "/")
	if mnt.SubPath != "" {
		rel = path.Join(mnt.SubPath, rel)
	}
	key := rel
	if len(vol.ConfigMap.Items) > 0 {
		key = ""
		for _, it := range vol.ConfigMap.Items {
			if it.Path == rel {
				key = it.Key
			}
		}
		if key == "" {
			return nil, fmt.Errorf("%w: plan %s: volume %q projects no item at path %q", ErrMountPath, p, vol.Name, rel)
		}
	}
	cm := m.ConfigMaps[vol.ConfigMap.Name]
	if cm == nil {
		return nil, fmt.Errorf("%w: plan volume %q names ConfigMap/%s, which no manifest defines", ErrMissingRef, vol.Name, vol.ConfigMap.Name)
	}
	data, ok := cm.Data[key]
	if !ok {
		return nil, fmt.Errorf("%w: plan %s: ConfigMap/%s has no key %q", ErrMissingRef, p, cm.Name, key)
	}
	return []byte(data), nil
}

// checkPlanMounts: sources must be on a mounted volume, outputs on a
// writable one; a path outside every mount is the container's read-only root.
func checkPlanMounts(c *corev1.Container, plan *Plan) error {
	var errs []error
	for _, vm := range plan.VMs {
		if mountFor(c, vm.Source) == nil {
			errs = append(errs, fmt.Errorf("%w: plan source %s is not under any volumeMount", ErrMountPath, vm.Source))
		}
	}
	for _, out := range plan.outputs() {
		if mnt := mountFor(c, out); mnt == nil || mnt.ReadOnly {
			errs = append(errs, fmt.Errorf("%w: plan output %s is not under a writable volumeMount", ErrMountPath, out))
		}
	}
	return errors.Join(errs...)
}

// checkStoreCredentials: gocloud.dev's s3blob reads its credentials from
// the environment; without them every shard fails at its first chunk.
func checkStoreCredentials(plan *Plan, env map[string]bool) error {
	if !plan.usesS3() {
		return nil
	}
	var errs []error
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if !env[v] {
			errs = append(errs, fmt.Errorf("%w: plan store %s, but the container has no %s", ErrStoreCredentials, plan.Defaults.Store, v))
		}
	}
	return errors.Join(errs...)
}

// checkResources: a memory limit must be set (a guest's RAM is allocated
// up front) and leave room for the largest guest the plan boots.
func checkResources(c *corev1.Container, plan *Plan) error {
	var errs []error
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		errs = append(errs, fmt.Errorf("%w: no cpu request: the scheduler would pack shards onto one node", ErrResources))
	}
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		return errors.Join(append(errs, fmt.Errorf("%w: no memory limit", ErrResources))...)
	}
	if guest := plan.maxMemoryMiB(); guest > 0 {
		need := resource.NewQuantity((guest+memoryOverheadMiB)<<20, resource.BinarySI)
		if limit.Cmp(*need) < 0 {
			errs = append(errs, fmt.Errorf("%w: memory limit %s is below the plan's largest guest (%d MiB) plus %d MiB for the VMM", ErrResources, limit.String(), guest, memoryOverheadMiB))
		}
	}
	return errors.Join(errs...)
}

// mountFor returns the mount whose path is the longest prefix of p.
func mountFor(c *corev1.Container, p string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		mnt := &c.VolumeMounts[i]
		root := strings.TrimSuffix(mnt.MountPath, "/")
		if p != root && !strings.HasPrefix(p, root+"/") {
			continue
		}
		if best == nil || len(root) > len(best.MountPath) {
			best = mnt
		}
	}
	return best
}

func volumeNamed(pod *corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func envValue(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func secretKeys(s *corev1.Secret) []string {
	var keys []string
	for k := range s.Data {
		keys = append(keys, k)
	}
	for k := range s.StringData {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func configMapKeys(cm *corev1.ConfigMap) []string {
	var keys []string
	for k := range cm.Data {
		keys = append(keys, k)
	}
	for k := range cm.BinaryData {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func isTrue(b *bool) bool { return b != nil && *b }

func int32String(p *int32) string {
	if p == nil {
		return "unset"
	}
	return strconv.Itoa(int(*p))
}
