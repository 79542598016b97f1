package deploy

import (
	"errors"
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ErrInvalid marks what the API server's own validation would refuse in the
// fields these manifests use: malformed names and keys, a mount of a volume
// the pod does not have, a failure-policy rule for a container it does not
// have. The server's full validation lives in k8s.io/kubernetes, which is not
// importable as a library; these are the rules that the manifests can break.
var ErrInvalid = errors.New("rejected by API validation")

// maxJobName: the Job's name becomes a label value on its pods (at most 63
// characters), so the API server refuses longer ones.
const maxJobName = validation.LabelValueMaxLength

// Validate applies those rules to every object in m.
func Validate(m *Manifests) error {
	var errs []error
	for name, cm := range m.ConfigMaps {
		errs = append(errs, objectName("ConfigMap", name))
		for k := range cm.Data {
			errs = append(errs, problems(validation.IsConfigMapKey(k), "ConfigMap/%s key %q", name, k))
		}
	}
	for name, s := range m.Secrets {
		errs = append(errs, objectName("Secret", name))
		for _, k := range secretKeys(s) {
			errs = append(errs, problems(validation.IsConfigMapKey(k), "Secret/%s key %q", name, k))
		}
	}
	for _, job := range m.Jobs {
		errs = append(errs, objectName("Job", job.Name))
		if len(job.Name) > maxJobName {
			errs = append(errs, fmt.Errorf("%w: Job/%s: name longer than %d characters", ErrInvalid, job.Name, maxJobName))
		}
		errs = append(errs, validatePod(job), validateFailurePolicy(job))
	}
	return errors.Join(errs...)
}

func objectName(kind, name string) error {
	return problems(validation.IsDNS1123Subdomain(name), "%s name %q", kind, name)
}

// validatePod: container, volume and env names well formed; every mount
// names a volume of the pod.
func validatePod(job *batchv1.Job) error {
	pod := job.Spec.Template.Spec
	var errs []error
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		errs = append(errs, problems(validation.IsDNS1123Label(v.Name), "Job/%s volume %q", job.Name, v.Name))
		volumes[v.Name] = true
	}
	for _, c := range pod.Containers {
		errs = append(errs, problems(validation.IsDNS1123Label(c.Name), "Job/%s container %q", job.Name, c.Name))
		for _, e := range c.Env {
			errs = append(errs, problems(validation.IsEnvVarName(e.Name), "Job/%s container %s env %q", job.Name, c.Name, e.Name))
		}
		errs = append(errs, validateResources(job.Name, c))
		for _, mnt := range c.VolumeMounts {
			if !volumes[mnt.Name] {
				errs = append(errs, fmt.Errorf("%w: Job/%s container %s mounts volume %q, which the pod does not have", ErrInvalid, job.Name, c.Name, mnt.Name))
			}
			if !strings.HasPrefix(mnt.MountPath, "/") {
				errs = append(errs, fmt.Errorf("%w: Job/%s container %s mountPath %q is not absolute", ErrInvalid, job.Name, c.Name, mnt.MountPath))
			}
		}
	}
	return errors.Join(errs...)
}

// validateResources: a request may not exceed its limit, and an extended
// resource such as the KVM device (anything outside the kubernetes.io
// namespace) cannot be overcommitted: it needs a limit equal to its request.
func validateResources(job string, c corev1.Container) error {
	var errs []error
	for name, req := range c.Resources.Requests {
		limit, hasLimit := c.Resources.Limits[name]
		extended := strings.Contains(string(name), "/") && !strings.Contains(string(name), "kubernetes.io/")
		switch {
		case extended && (!hasLimit || req.Cmp(limit) != 0):
			errs = append(errs, fmt.Errorf("%w: Job/%s container %s: extended resource %s needs a limit equal to its request %s", ErrInvalid, job, c.Name, name, req.String()))
		case hasLimit && req.Cmp(limit) > 0:
			errs = append(errs, fmt.Errorf("%w: Job/%s container %s: %s request %s exceeds its limit %s", ErrInvalid, job, c.Name, name, req.String(), limit.String()))
		}
	}
	return errors.Join(errs...)
}

// validateFailurePolicy: the FailIndex action exists only with
// backoffLimitPerIndex, and an exit-code rule's container must exist.
func validateFailurePolicy(job *batchv1.Job) error {
	p := job.Spec.PodFailurePolicy
	if p == nil {
		return nil
	}
	containers := map[string]bool{}
	for _, c := range job.Spec.Template.Spec.Containers {
		containers[c.Name] = true
	}
	var errs []error
	for i, r := range p.Rules {
		if r.Action == batchv1.PodFailurePolicyActionFailIndex && job.Spec.BackoffLimitPerIndex == nil {
			errs = append(errs, fmt.Errorf("%w: Job/%s podFailurePolicy.rules[%d]: FailIndex needs backoffLimitPerIndex", ErrInvalid, job.Name, i))
		}
		if oc := r.OnExitCodes; oc != nil && oc.ContainerName != nil && !containers[*oc.ContainerName] {
			errs = append(errs, fmt.Errorf("%w: Job/%s podFailurePolicy.rules[%d] names container %q, which the pod does not have", ErrInvalid, job.Name, i, *oc.ContainerName))
		}
		if (r.OnExitCodes == nil) == (len(r.OnPodConditions) == 0) {
			errs = append(errs, fmt.Errorf("%w: Job/%s podFailurePolicy.rules[%d] needs exactly one of onExitCodes and onPodConditions", ErrInvalid, job.Name, i))
		}
	}
	return errors.Join(errs...)
}

// problems turns a validation function's messages into one error.
func problems(msgs []string, format string, args ...any) error {
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %s", ErrInvalid, fmt.Sprintf(format, args...), strings.Join(msgs, "; "))
}
