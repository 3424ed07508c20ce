package validate

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// manifestDir holds the manifests; repoRoot is tether's module.
const (
	manifestDir = ".."
	repoRoot    = "../../.."
)

var scratch string // removed by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tether-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scratch = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var loaded = sync.OnceValues(func() (*Set, error) { return Load(manifestDir) })

func manifests(t *testing.T) *Set {
	t.Helper()
	s, err := loaded()
	if err != nil {
		t.Fatalf("load manifests: %v", err)
	}
	return s
}

// tetherDeployment is the Deployment named tether and its container named
// tether.
func tetherDeployment(t *testing.T) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	for _, d := range manifests(t).Deployments {
		if d.Name != "tether" {
			continue
		}
		for i := range d.Spec.Template.Spec.Containers {
			if c := &d.Spec.Template.Spec.Containers[i]; c.Name == "tether" {
				return d, c
			}
		}
		t.Fatalf("deployment tether has no container named tether")
	}
	t.Fatalf("no deployment named tether")
	return nil, nil
}

// tetherSettings is the tether container's arguments and its configuration
// file (the ConfigMap file --config names, through its volume).
func tetherSettings(t *testing.T) (Args, map[string]any) {
	t.Helper()
	d, c := tetherDeployment(t)
	args, err := ParseArgs(c.Args)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Command) > 0 {
		t.Errorf("tether container sets command %q: the image's entrypoint is tether; give args only", c.Command)
	}
	path, ok := args.Last("config")
	if !ok {
		t.Fatalf("tether's args give no --config")
	}
	cm, key := mountedConfigMap(t, d, c, path)
	data, ok := cm.Data[key]
	if !ok {
		t.Fatalf("--config=%s: configmap %s has no key %q", path, cm.Name, key)
	}
	cfg, err := TetherConfig(data)
	if err != nil {
		t.Fatalf("configmap %s, %s: %v", cm.Name, key, err)
	}
	return args, cfg
}

// mountedConfigMap finds the ConfigMap and key a file path of the container
// reads.
func mountedConfigMap(t *testing.T, d *appsv1.Deployment, c *corev1.Container, path string) (*corev1.ConfigMap, string) {
	t.Helper()
	vol, rel := mountFor(t, d, c, path)
	if vol.ConfigMap == nil {
		t.Fatalf("%s: volume %s is not a ConfigMap", path, vol.Name)
	}
	for _, cm := range manifests(t).ConfigMaps {
		if cm.Name == vol.ConfigMap.Name && cm.Namespace == d.Namespace {
			return cm, rel
		}
	}
	t.Fatalf("%s: no ConfigMap %s/%s", path, d.Namespace, vol.ConfigMap.Name)
	return nil, ""
}

// mountFor finds the volume under whose mount path a file lies, and the
// file's path inside the volume.
func mountFor(t *testing.T, d *appsv1.Deployment, c *corev1.Container, path string) (*corev1.Volume, string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok || m.SubPath != "" {
			continue
		}
		for i := range d.Spec.Template.Spec.Volumes {
			if v := &d.Spec.Template.Spec.Volumes[i]; v.Name == m.Name {
				return v, rel
			}
		}
		t.Fatalf("%s: volume mount %s has no volume", path, m.Name)
	}
	t.Fatalf("%s lies under no volume mount of container %s", path, c.Name)
	return nil, ""
}

// containerPort resolves a probe's or a Service's port (a number or a
// container port's name) in the container.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// tetherBin is the tether binary the tests run: $TETHER_BIN/tether when
// TETHER_BIN is set (the directory `make build` fills), else the image's
// binary, built as deploy/Containerfile builds it.
func tetherBin(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("TETHER_BIN"); dir != "" {
		return filepath.Join(dir, "tether")
	}
	return imageBin(t)
}

var imageBuild = sync.OnceValues(func() (string, error) {
	cf, err := ReadContainerfile(filepath.Join(repoRoot, "deploy", "Containerfile"))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(scratch, "image", "tether")
	cmd, err := cf.LocalBuild(bin)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, cmd.Args[0], cmd.Args[1:]...)
	run.Dir = repoRoot
	run.Env = append(os.Environ(), cmd.Env...)
	if out, err := run.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", strings.Join(cmd.Env, " "), strings.Join(cmd.Args, " "), err, out)
	}
	return bin, nil
})

// imageBin builds tether with deploy/Containerfile's build command, once.
func imageBin(t *testing.T) string {
	t.Helper()
	bin, err := imageBuild()
	if err != nil {
		t.Fatalf("build as the Containerfile does: %v", err)
	}
	return bin
}

// Help is what `tether --help` lists: each flag's name and, where it
// prints one, its default.
type Help struct {
	Flags    map[string]bool
	Defaults map[string]string
}

var (
	helpFlagLine = regexp.MustCompile(`^  --([a-z0-9-]+)`)
	helpDefault  = regexp.MustCompile(`\(default (.*)\)$`)
)

var helpOnce sync.Once
var help Help
var helpErr error

func tetherHelp(t *testing.T) Help {
	t.Helper()
	bin := tetherBin(t)
	helpOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
		if err != nil {
			helpErr = fmt.Errorf("tether --help: %v\n%s", err, out)
			return
		}
		help = Help{Flags: map[string]bool{}, Defaults: map[string]string{}}
		var last string
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			line := sc.Text()
			if m := helpFlagLine.FindStringSubmatch(line); m != nil {
				last = m[1]
				help.Flags[last] = true
				continue
			}
			if m := helpDefault.FindStringSubmatch(line); m != nil && last != "" && strings.HasPrefix(line, "    \t") {
				help.Defaults[last] = m[1]
			}
		}
		if len(help.Flags) < 10 {
			helpErr = fmt.Errorf("tether --help lists %d flags:\n%s", len(help.Flags), out)
		}
	})
	if helpErr != nil {
		t.Fatal(helpErr)
	}
	return help
}
