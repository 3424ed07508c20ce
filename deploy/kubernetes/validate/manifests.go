package validate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// KustomizationFile is the kustomization's name: it is read by Kustomization,
// not as a manifest.
const KustomizationFile = "kustomization.yaml"

// Object is one decoded manifest document.
type Object struct {
	File string
	Obj  runtime.Object
}

// Set is every object of a manifest directory, by kind.
type Set struct {
	Objects      []Object
	Namespaces   []*corev1.Namespace
	Services     []*corev1.Service
	ConfigMaps   []*corev1.ConfigMap
	Secrets      []*corev1.Secret
	Deployments  []*appsv1.Deployment
	StatefulSets []*appsv1.StatefulSet
	PDBs         []*policyv1.PodDisruptionBudget
}

// decoder decodes YAML strictly into the kinds the manifests may hold: a
// field the API type does not have (or spelt in another case), a key given
// twice, or a kind of another group is an error.
func decoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
}

// Decode decodes one YAML document strictly into its typed object.
func Decode(doc []byte) (runtime.Object, error) {
	obj, _, err := decoder().Decode(doc, nil, nil)
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// Documents splits a multi-document YAML file; documents holding only
// comments are dropped.
func Documents(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if hasContent(doc) {
			docs = append(docs, doc)
		}
	}
}

func hasContent(doc []byte) bool {
	for line := range bytes.SplitSeq(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return true
		}
	}
	return false
}

// ManifestFiles lists the *.yaml files of dir but the kustomization.
func ManifestFiles(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	files = slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == KustomizationFile })
	slices.Sort(files)
	return files, nil
}

// Load decodes every document of every manifest file of dir.
func Load(dir string) (*Set, error) {
	files, err := ManifestFiles(dir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no manifests", dir)
	}
	s := &Set{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := s.Decode(filepath.Base(f), data); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Decode adds every document of one YAML stream (named file in errors)
// to the set, each decoded strictly into its typed object.
func (s *Set) Decode(file string, data []byte) error {
	docs, err := Documents(data)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	dec := decoder()
	for i, doc := range docs {
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return fmt.Errorf("%s, document %d: %w", file, i+1, err)
		}
		if err := s.add(file, obj); err != nil {
			return fmt.Errorf("%s, document %d: %w", file, i+1, err)
		}
	}
	return nil
}

func (s *Set) add(file string, obj runtime.Object) error {
	s.Objects = append(s.Objects, Object{File: file, Obj: obj})
	switch o := obj.(type) {
	case *corev1.Namespace:
		s.Namespaces = append(s.Namespaces, o)
	case *corev1.Service:
		s.Services = append(s.Services, o)
	case *corev1.ConfigMap:
		s.ConfigMaps = append(s.ConfigMaps, o)
	case *corev1.Secret:
		s.Secrets = append(s.Secrets, o)
	case *appsv1.Deployment:
		s.Deployments = append(s.Deployments, o)
	case *appsv1.StatefulSet:
		s.StatefulSets = append(s.StatefulSets, o)
	case *policyv1.PodDisruptionBudget:
		s.PDBs = append(s.PDBs, o)
	default:
		return fmt.Errorf("kind %T is not one the manifests use", obj)
	}
	return nil
}

// Kustomization is the part of kustomize's Kustomization the manifests use;
// any other field is an error, so a field kustomize would read is not
// silently skipped here.
type Kustomization struct {
	APIVersion      string            `json:"apiVersion"`
	Kind            string            `json:"kind"`
	Namespace       string            `json:"namespace"`
	Resources       []string          `json:"resources"`
	SecretGenerator []SecretGenerator `json:"secretGenerator"`
}

// SecretGenerator is one kustomize secretGenerator entry.
type SecretGenerator struct {
	Name  string   `json:"name"`
	Files []string `json:"files"`
}

// LoadKustomization reads dir's kustomization strictly.
func LoadKustomization(dir string) (*Kustomization, error) {
	data, err := os.ReadFile(filepath.Join(dir, KustomizationFile))
	if err != nil {
		return nil, err
	}
	var k Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", KustomizationFile, err)
	}
	return &k, nil
}

// Args is a container's command line: flag name → its values in order.
// Every argument must be --name=value, or --name alone for a switch.
type Args map[string][]string

// ParseArgs reads container args of the form --name=value or --name.
func ParseArgs(args []string) (Args, error) {
	out := Args{}
	for _, a := range args {
		if !strings.HasPrefix(a, "--") || len(a) == 2 {
			return nil, fmt.Errorf("argument %q: want --name=value", a)
		}
		name, value, ok := strings.Cut(a[2:], "=")
		if !ok {
			value = "true"
		}
		out[name] = append(out[name], value)
	}
	return out, nil
}

// Last is a flag's last value (the one tether uses) and whether it is given.
func (a Args) Last(name string) (string, bool) {
	v := a[name]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// TetherConfig parses tether's YAML configuration file (keys are long flag
// names), refusing a key given twice.
func TetherConfig(data string) (map[string]any, error) {
	js, err := yaml.YAMLToJSONStrict([]byte(data))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(js, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// Setting is what tether runs with for one flag: the command line wins over
// the configuration file, which wins over the default of `tether --help`.
func Setting(args Args, config map[string]any, defaults map[string]string, name string) []string {
	if v := args[name]; len(v) > 0 {
		return v
	}
	if v, ok := config[name]; ok {
		if list, ok := v.([]any); ok {
			out := make([]string, 0, len(list))
			for _, e := range list {
				out = append(out, scalar(e))
			}
			return out
		}
		return []string{scalar(v)}
	}
	if d, ok := defaults[name]; ok {
		return []string{d}
	}
	return nil
}

func scalar(v any) string {
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return fmt.Sprint(int64(f))
	}
	return fmt.Sprint(v)
}
