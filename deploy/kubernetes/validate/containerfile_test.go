package validate

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func containerfile(t *testing.T) *Containerfile {
	t.Helper()
	cf, err := ReadContainerfile(filepath.Join(repoRoot, "deploy", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return cf
}

// TestContainerfileStages: a Go build stage on the toolchain of go.mod, and
// a minimal final stage that runs the binary as a non-root user and exposes
// the Deployment's ports.
func TestContainerfileStages(t *testing.T) {
	cf := containerfile(t)
	if len(cf.Stages) != 2 {
		t.Fatalf("%d stages, want a build stage and a final one", len(cf.Stages))
	}
	build, final := cf.Stages[0], cf.Final()

	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod names no go version")
	}
	if want := "golang:" + string(m[1]); !strings.HasSuffix(build.From, "/"+want) && build.From != want {
		t.Errorf("build stage FROM %s, want %s (go.mod says go %s)", build.From, want, m[1])
	}

	switch {
	case strings.HasPrefix(final.From, "gcr.io/distroless/static") && strings.HasSuffix(final.From, ":nonroot"):
	case final.From == "scratch":
	default:
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static-*:nonroot or scratch", final.From)
	}
	users := final.All("USER")
	if len(users) == 0 {
		t.Errorf("final stage sets no USER")
	} else {
		user, _, _ := strings.Cut(users[len(users)-1].Rest, ":")
		if uid, err := strconv.Atoi(user); err != nil || uid == 0 {
			t.Errorf("USER %s: want a numeric non-root uid (runAsNonRoot checks it)", users[len(users)-1].Rest)
		}
	}

	// ENTRYPOINT is the binary the build stage's go build writes.
	eps := final.All("ENTRYPOINT")
	if len(eps) != 1 {
		t.Fatalf("final stage: %d ENTRYPOINTs, want one", len(eps))
	}
	ep, err := eps[0].ExecForm()
	if err != nil || len(ep) != 1 {
		t.Fatalf("ENTRYPOINT %s: want [\"/path/to/tether\"] (%v)", eps[0].Rest, err)
	}
	built := ""
	for _, cp := range final.All("COPY") {
		f := strings.Fields(cp.Rest)
		if len(f) == 3 && f[0] == "--from="+build.Name && f[2] == ep[0] {
			built = f[1]
		}
	}
	cmd, err := cf.LocalBuild("OUT")
	if err != nil {
		t.Fatal(err)
	}
	if built == "" {
		t.Errorf("ENTRYPOINT %s is not copied from stage %q", ep[0], build.Name)
	}
	if !slices.Contains(cmd.Env, "CGO_ENABLED=0") || !slices.Contains(cmd.Args, "-trimpath") {
		t.Errorf("build command %v %v: want CGO_ENABLED=0 and -trimpath", cmd.Env, cmd.Args)
	}

	// EXPOSE: the tether container's ports.
	var exposed []int32
	for _, e := range final.All("EXPOSE") {
		for p := range strings.FieldsSeq(e.Rest) {
			n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
			if err != nil {
				t.Errorf("EXPOSE %s: %v", p, err)
			}
			exposed = append(exposed, int32(n))
		}
	}
	_, c := tetherDeployment(t)
	var ports []int32
	for _, p := range c.Ports {
		ports = append(ports, p.ContainerPort)
	}
	slices.Sort(exposed)
	slices.Sort(ports)
	if !slices.Equal(exposed, ports) {
		t.Errorf("EXPOSE %v, the Deployment's container ports %v", exposed, ports)
	}
}

// TestContainerfileCopiesSources: the build stage copies every package of
// the module that cmd/tether is built from (a new package left out would
// break only the image).
func TestContainerfileCopiesSources(t *testing.T) {
	cf := containerfile(t)
	var copied []string
	for _, cp := range cf.Stages[0].All("COPY") {
		f := strings.Fields(cp.Rest)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "--") {
			copied = append(copied, f[:len(f)-1]...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list := exec.CommandContext(ctx, "go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/tether")
	list.Dir = repoRoot
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for dir := range strings.FieldsSeq(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		for _, c := range copied {
			c = strings.TrimSuffix(strings.TrimPrefix(c, "./"), "/")
			if rel == c || strings.HasPrefix(rel, c+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("package directory %s is not copied into the build stage (COPY %v)", rel, copied)
		}
	}
	for _, want := range []string{"go.mod", "go.sum"} {
		if !slices.Contains(copied, want) {
			t.Errorf("the build stage does not copy %s", want)
		}
	}
}

// TestImageBinaryStatic: the Containerfile's build command, run here, gives
// a static binary (no program interpreter, no dynamic section) without
// symbols or the build's paths, which runs on a base image without libc.
func TestImageBinaryStatic(t *testing.T) {
	bin := imageBin(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %s program header: dynamically linked", bin, p.Type)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Errorf("%s has a .dynamic section", bin)
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs %v", bin, libs)
	}
	if s := f.Section(".symtab"); s != nil {
		t.Errorf("%s has a symbol table: built without -ldflags '-s'", bin)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs(repoRoot)
	if bytes.Contains(data, []byte(root+"/proxy/")) {
		t.Errorf("%s holds the build's source paths: built without -trimpath", bin)
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--listen")) {
		t.Errorf("%s --help: %v\n%s", bin, err, out)
	}
}
