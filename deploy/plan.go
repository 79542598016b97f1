package deploy

import (
	"errors"
	"fmt"
	"net/url"
	"path"
)

// ErrPlan marks a plan (the ConfigMap's plan file) that `vmconv batch`
// would refuse: an unknown field, a VM without a source or target format,
// an engine it does not have, a store URL it cannot open.
var ErrPlan = errors.New("invalid batch plan")

// Plan is the batch plan as `vmconv batch PLAN` reads it. It is kept here,
// apart from the batch package, so that the manifests are checked against
// the documented format rather than against one implementation of it.
type Plan struct {
	Defaults PlanDefaults `json:"defaults"`
	VMs      []PlanVM     `json:"vms"`
}

// PlanDefaults apply to every VM that does not set the field itself.
type PlanDefaults struct {
	To     string `json:"to,omitempty"`
	Out    string `json:"out,omitempty"`
	Verify *bool  `json:"verify,omitempty"`
	Engine string `json:"engine,omitempty"`
	Store  string `json:"store,omitempty"`
	Memory int64  `json:"memory,omitempty"` // MiB, for the verify boot
}

// PlanVM is one VM of the fleet; the fields after Source override the
// defaults.
type PlanVM struct {
	Source string `json:"source"`
	Name   string `json:"name,omitempty"`
	To     string `json:"to,omitempty"`
	Out    string `json:"out,omitempty"`
	Verify *bool  `json:"verify,omitempty"`
	Engine string `json:"engine,omitempty"`
	Memory int64  `json:"memory,omitempty"`
}

// engines are `vmconv verify --engine` values.
var engines = map[string]bool{"": true, "auto": true, "builtin": true, "qemu": true}

// ParsePlan decodes a plan strictly (YAML or JSON) and checks what can be
// known without the files: every VM has an absolute source and a target
// format, names are unique, engines exist, and the store URL is one the
// S3 back end opens.
func ParsePlan(raw []byte) (*Plan, error) {
	var p Plan
	if err := unmarshalStrict(raw, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPlan, err)
	}
	if len(p.VMs) == 0 {
		return nil, fmt.Errorf("%w: vms is empty", ErrPlan)
	}
	if err := checkDefaults(p.Defaults); err != nil {
		return nil, err
	}
	names := map[string]int{}
	for i, vm := range p.VMs {
		if err := checkVM(p.Defaults, vm); err != nil {
			return nil, fmt.Errorf("vms[%d]: %w", i, err)
		}
		if vm.Name == "" {
			continue
		}
		if j, dup := names[vm.Name]; dup {
			return nil, fmt.Errorf("%w: vms[%d] and vms[%d] are both named %q", ErrPlan, j, i, vm.Name)
		}
		names[vm.Name] = i
	}
	return &p, nil
}

func checkDefaults(d PlanDefaults) error {
	if !engines[d.Engine] {
		return fmt.Errorf("%w: defaults.engine %q is not auto, builtin or qemu", ErrPlan, d.Engine)
	}
	if d.Memory < 0 {
		return fmt.Errorf("%w: defaults.memory %d MiB is negative", ErrPlan, d.Memory)
	}
	if d.Store != "" {
		if err := checkStore(d.Store); err != nil {
			return err
		}
	}
	return nil
}

func checkVM(d PlanDefaults, vm PlanVM) error {
	if vm.Source == "" {
		return fmt.Errorf("%w: source is empty", ErrPlan)
	}
	if !path.IsAbs(vm.Source) {
		// Pods start in the image's working directory, which holds no VMs.
		return fmt.Errorf("%w: source %q is not an absolute path", ErrPlan, vm.Source)
	}
	if vm.To == "" && d.To == "" {
		return fmt.Errorf("%w: %s has no target format (to) and defaults.to is empty", ErrPlan, vm.Source)
	}
	if vm.Out == "" && d.Out == "" {
		return fmt.Errorf("%w: %s has no output directory (out) and defaults.out is empty", ErrPlan, vm.Source)
	}
	if !engines[vm.Engine] {
		return fmt.Errorf("%w: engine %q is not auto, builtin or qemu", ErrPlan, vm.Engine)
	}
	return nil
}

// checkStore accepts the store URLs the batch contract names: s3:// with a
// bucket (the query parameters go to gocloud.dev's s3blob), or file://.
func checkStore(store string) error {
	u, err := url.Parse(store)
	if err != nil {
		return fmt.Errorf("%w: store: %v", ErrPlan, err)
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return fmt.Errorf("%w: store %q names no bucket", ErrPlan, store)
		}
		if ep := u.Query().Get("endpoint"); ep != "" {
			if e, err := url.Parse(ep); err != nil || e.Scheme == "" || e.Host == "" {
				return fmt.Errorf("%w: store endpoint %q is not a URL like http://host:port", ErrPlan, ep)
			}
		}
	case "file":
	default:
		return fmt.Errorf("%w: store %q: scheme %q is not s3 or file", ErrPlan, store, u.Scheme)
	}
	return nil
}

// outputs returns the output directories the plan writes to.
func (p *Plan) outputs() []string {
	outs := []string{}
	for _, vm := range p.VMs {
		if vm.Out != "" {
			outs = append(outs, vm.Out)
		} else {
			outs = append(outs, p.Defaults.Out)
		}
	}
	return outs
}

// maxMemoryMiB is the largest guest the plan boots, 0 when it verifies none
// or names no memory (then vmconv's default applies).
func (p *Plan) maxMemoryMiB() int64 {
	var most int64
	for _, vm := range p.VMs {
		if !p.verifies(vm) {
			continue
		}
		m := p.Defaults.Memory
		if vm.Memory != 0 {
			m = vm.Memory
		}
		most = max(most, m)
	}
	return most
}

func (p *Plan) verifies(vm PlanVM) bool {
	if vm.Verify != nil {
		return *vm.Verify
	}
	return p.Defaults.Verify != nil && *p.Defaults.Verify
}

// usesS3 says whether the plan's store needs the S3 credentials.
func (p *Plan) usesS3() bool {
	u, err := url.Parse(p.Defaults.Store)
	return err == nil && u.Scheme == "s3"
}
