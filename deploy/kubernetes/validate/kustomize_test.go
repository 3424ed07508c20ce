package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// TestKustomizeBuild runs kustomize (the code of `kubectl apply -k`) on a
// copy of the manifests with a test admin.token beside them: the output
// decodes strictly, everything lands in the kustomization's namespace, and
// the Deployment mounts the admin token Secret under the generated name.
func TestKustomizeBuild(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fs := filesys.MakeFsInMemory()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := fs.WriteFile(filepath.Join("/k", filepath.Base(f)), data); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.WriteFile("/k/admin.token", []byte("test-token\n")); err != nil {
		t.Fatal(err)
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "/k")
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	built := &Set{}
	if err := built.Decode("kustomize build", out); err != nil {
		t.Fatal(err)
	}

	k, err := LoadKustomization(manifestDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range built.Objects {
		m := o.Obj.(metav1.Object)
		if ns, ok := o.Obj.(*corev1.Namespace); ok {
			if ns.Name != k.Namespace {
				t.Errorf("built Namespace %s, want %s", ns.Name, k.Namespace)
			}
			continue
		}
		if m.GetNamespace() != k.Namespace {
			t.Errorf("built %T %s: namespace %q, want %q", o.Obj, m.GetName(), m.GetNamespace(), k.Namespace)
		}
	}
	src := manifests(t)
	if len(built.Deployments) != len(src.Deployments) || len(built.StatefulSets) != len(src.StatefulSets) ||
		len(built.Services) != len(src.Services) || len(built.PDBs) != len(src.PDBs) || len(built.ConfigMaps) != len(src.ConfigMaps) {
		t.Errorf("kustomize build gives %d objects, the manifests %d (the Secret example aside)", len(built.Objects), len(src.Objects)-len(src.Secrets))
	}
	if len(built.Secrets) != 1 {
		t.Fatalf("kustomize build gives %d Secrets, want the generated admin token", len(built.Secrets))
	}
	sec := built.Secrets[0]
	if !strings.HasPrefix(sec.Name, "tether-admin-token-") || string(sec.Data["token"]) != "test-token\n" {
		t.Errorf("generated Secret %s holds %q", sec.Name, sec.Data)
	}
	if len(built.Deployments) != 1 {
		t.Fatalf("%d Deployments", len(built.Deployments))
	}
	mounted := false
	for _, v := range built.Deployments[0].Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == sec.Name {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("the built Deployment does not mount the generated Secret %s", sec.Name)
	}
}
