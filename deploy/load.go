// Package deploy holds vmconv's container recipe (Containerfile) and its
// Kubernetes manifests (kubernetes/), and checks those manifests offline:
// every object is decoded strictly into its typed Kubernetes API struct, and
// the Job is checked against the contract of `vmconv batch` (shards, index,
// plan, store credentials, mounts). No cluster or kustomize binary is needed;
// the few kustomize features the manifests use (resources, images, strategic
// merge patches) are applied here.
package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// ErrDecode marks a manifest that does not decode strictly: a YAML syntax
// error, an unknown or misspelt field, a duplicate key, a wrong type, or a
// kind the checks do not know.
var ErrDecode = errors.New("manifest does not decode strictly")

// Kustomization is the part of kustomize's Kustomization that the manifests
// use. Fields outside it are rejected, so a manifest cannot rely on a
// kustomize feature these checks would silently ignore.
type Kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Images     []Image  `json:"images,omitempty"`
	Patches    []Patch  `json:"patches,omitempty"`
}

// Image is one kustomize images entry: containers whose image name is Name
// are rewritten to NewName:NewTag (or @Digest).
type Image struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

// Patch is a strategic merge patch file; its target is the object of the
// same kind and name.
type Patch struct {
	Path string `json:"path"`
}

// Manifests is one kustomization with its resources decoded and its patches
// applied: what `kubectl apply -k DIR` would send, before image rewriting.
type Manifests struct {
	Dir           string
	Kustomization Kustomization
	// Images holds the images entries of this kustomization and of every
	// base it includes, the nearest first.
	Images     []Image
	Jobs       []*batchv1.Job
	ConfigMaps map[string]*corev1.ConfigMap
	Secrets    map[string]*corev1.Secret
	// Sources names the file each object came from, keyed "Kind/name",
	// so that errors point at a file.
	Sources map[string]string
}

// Load reads the kustomization in dir, decoding every resource strictly.
// A resource that is a directory is loaded as a base, as kustomize does.
func Load(dir string) (*Manifests, error) {
	path := filepath.Join(dir, "kustomization.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := &Manifests{
		Dir:        dir,
		ConfigMaps: map[string]*corev1.ConfigMap{},
		Secrets:    map[string]*corev1.Secret{},
		Sources:    map[string]string{},
	}
	if err := unmarshalStrict(raw, &m.Kustomization); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrDecode, err)
	}
	if k := m.Kustomization; k.Kind != "Kustomization" || !strings.HasPrefix(k.APIVersion, "kustomize.config.k8s.io/") {
		return nil, fmt.Errorf("%s: %w: apiVersion %q kind %q, want kustomize.config.k8s.io/v1beta1 Kustomization", path, ErrDecode, k.APIVersion, k.Kind)
	}
	m.Images = append(m.Images, m.Kustomization.Images...)
	for _, res := range m.Kustomization.Resources {
		if err := m.addResource(filepath.Join(dir, res)); err != nil {
			return nil, err
		}
	}
	for _, p := range m.Kustomization.Patches {
		if err := m.applyPatch(filepath.Join(dir, p.Path)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Manifests) addResource(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		base, err := Load(path)
		if err != nil {
			return err
		}
		return m.merge(base)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for i, doc := range splitDocuments(raw) {
		if err := m.addObject(path, i, doc); err != nil {
			return err
		}
	}
	return nil
}

// merge takes in a base's objects; the base's images come after this
// kustomization's own, which take precedence.
func (m *Manifests) merge(base *Manifests) error {
	m.Images = append(m.Images, base.Images...)
	m.Jobs = append(m.Jobs, base.Jobs...)
	for k, v := range base.ConfigMaps {
		m.ConfigMaps[k] = v
	}
	for k, v := range base.Secrets {
		m.Secrets[k] = v
	}
	for k, v := range base.Sources {
		if _, dup := m.Sources[k]; dup {
			return fmt.Errorf("%s: %w: %s defined twice", base.Dir, ErrDecode, k)
		}
		m.Sources[k] = v
	}
	return nil
}

// addObject decodes one YAML document into the typed object its apiVersion
// and kind name, with unknown and duplicate fields as errors.
func (m *Manifests) addObject(path string, index int, doc []byte) error {
	where := fmt.Sprintf("%s (document %d)", path, index+1)
	obj, err := decodeStrict(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	var key string
	switch o := obj.(type) {
	case *batchv1.Job:
		m.Jobs = append(m.Jobs, o)
		key = "Job/" + o.Name
	case *corev1.ConfigMap:
		m.ConfigMaps[o.Name] = o
		key = "ConfigMap/" + o.Name
	case *corev1.Secret:
		m.Secrets[o.Name] = o
		key = "Secret/" + o.Name
	}
	if _, dup := m.Sources[key]; dup {
		return fmt.Errorf("%s: %w: %s defined twice", where, ErrDecode, key)
	}
	m.Sources[key] = path
	return nil
}

// decodeStrict reads the document's type first, then decodes the whole of it
// into that type strictly.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "batch/v1 Job":
		obj = &batchv1.Job{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	default:
		return nil, fmt.Errorf("%w: apiVersion %q kind %q is not one the checks know (batch/v1 Job, v1 ConfigMap, v1 Secret)", ErrDecode, tm.APIVersion, tm.Kind)
	}
	if err := unmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s %w: %v", tm.Kind, ErrDecode, err)
	}
	return obj, nil
}

// applyPatch applies a strategic merge patch to the Job it names, as
// kustomize's patches do. The patch is decoded strictly first, so a typo in
// a patch is caught like one in a resource; the raw patch, not its typed
// form, is applied, since the typed form would carry empty fields that mean
// "delete" in a patch.
func (m *Manifests) applyPatch(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	obj, err := decodeStrict(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	patch, ok := obj.(*batchv1.Job)
	if !ok {
		return fmt.Errorf("%s: %w: only Job patches are supported", path, ErrDecode)
	}
	for i, job := range m.Jobs {
		if job.Name != patch.Name {
			continue
		}
		patched, err := strategicMerge(job, raw)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		m.Jobs[i] = patched
		return nil
	}
	return fmt.Errorf("%s: %w: patch target Job/%s is not among the resources", path, ErrDecode, patch.Name)
}

func strategicMerge(job *batchv1.Job, patchYAML []byte) (*batchv1.Job, error) {
	original, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	patch, err := yaml.YAMLToJSON(patchYAML)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	merged, err := strategicpatch.StrategicMergePatch(original, patch, batchv1.Job{})
	if err != nil {
		return nil, fmt.Errorf("%w: strategic merge: %v", ErrDecode, err)
	}
	out := &batchv1.Job{}
	if err := strictJSON(merged, out); err != nil {
		return nil, fmt.Errorf("%w: patched Job: %v", ErrDecode, err)
	}
	return out, nil
}

// unmarshalStrict decodes YAML (or JSON) into v as the API server does
// with fieldValidation=Strict: field names are case-sensitive (encoding/json
// would take "claimname" for "claimName"), and unknown or duplicate fields
// are errors, each named by its path ("spec.completionMod").
func unmarshalStrict(doc []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	return strictJSON(js, v)
}

func strictJSON(js []byte, v any) error {
	strict, err := sigsjson.UnmarshalStrict(js, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// splitDocuments splits a multi-document YAML stream at its "---" lines,
// dropping documents that hold only comments or blank lines.
func splitDocuments(raw []byte) [][]byte {
	var docs [][]byte
	var cur []string
	flush := func() {
		doc := strings.Join(cur, "\n")
		cur = nil
		for _, line := range strings.Split(doc, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, []byte(doc))
				return
			}
		}
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}
