package deploy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/deploy"
)

func TestParsePlan(t *testing.T) {
	tests := []struct {
		name string
		plan string
		// msg is empty for a plan that must parse, else part of the error.
		msg string
	}{
		{
			name: "yaml with defaults",
			plan: "defaults: {to: xva, out: /out, verify: true, engine: qemu, memory: 512}\nvms: [{source: /src/a.vmx}]",
		},
		{
			name: "json, per-VM target",
			plan: `{"defaults": {"out": "/out"}, "vms": [{"source": "/src/a.xva", "to": "vmx", "name": "a"}]}`,
		},
		{
			name: "file store",
			plan: "defaults: {to: xva, out: /out, store: 'file:///chunks'}\nvms: [{source: /a}]",
		},
		{name: "unknown top-level field", plan: "default: {to: xva}\nvms: [{source: /a}]", msg: `unknown field "default"`},
		{name: "unknown vm field", plan: "defaults: {to: xva, out: /o}\nvms: [{src: /a}]", msg: `unknown field "vms[0].src"`},
		{name: "no vms", plan: "defaults: {to: xva, out: /o}", msg: "vms is empty"},
		{name: "no source", plan: "defaults: {to: xva, out: /o}\nvms: [{name: a}]", msg: "source is empty"},
		{name: "relative source", plan: "defaults: {to: xva, out: /o}\nvms: [{source: a.vmx}]", msg: "not an absolute path"},
		{name: "no target format", plan: "defaults: {out: /o}\nvms: [{source: /a}]", msg: "no target format"},
		{name: "no output", plan: "defaults: {to: xva}\nvms: [{source: /a}]", msg: "no output directory"},
		{name: "bad engine", plan: "defaults: {to: xva, out: /o, engine: tcg}\nvms: [{source: /a}]", msg: `engine "tcg"`},
		{name: "bad vm engine", plan: "defaults: {to: xva, out: /o}\nvms: [{source: /a, engine: kvm}]", msg: `engine "kvm"`},
		{name: "verify not a bool", plan: "defaults: {to: xva, out: /o, verify: maybe}\nvms: [{source: /a}]", msg: "verify"},
		{name: "duplicate names", plan: "defaults: {to: xva, out: /o}\nvms: [{source: /a, name: x}, {source: /b, name: x}]", msg: `both named "x"`},
		{name: "bucketless store", plan: "defaults: {to: xva, out: /o, store: 's3:///p'}\nvms: [{source: /a}]", msg: "names no bucket"},
		{name: "bad endpoint", plan: "defaults: {to: xva, out: /o, store: 's3://b/p?endpoint=minio:9000'}\nvms: [{source: /a}]", msg: "endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := deploy.ParsePlan([]byte(tc.plan))
			if tc.msg == "" {
				require.NoError(t, err)
				assert.NotEmpty(t, p.VMs)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, deploy.ErrPlan)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}
