package validate

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// TestManifestsDecodeStrictly: every document of every manifest is a typed
// Kubernetes object with no unknown, duplicated or misspelt field.
func TestManifestsDecodeStrictly(t *testing.T) {
	s := manifests(t)
	kinds := map[string]int{}
	for _, o := range s.Objects {
		kinds[fmt.Sprintf("%T", o.Obj)]++
	}
	for _, want := range []string{"*v1.Namespace", "*v1.Service", "*v1.ConfigMap", "*v1.Deployment", "*v1.StatefulSet", "*v1.PodDisruptionBudget", "*v1.Secret"} {
		if kinds[want] == 0 {
			t.Errorf("no %s among the manifests (%v)", want, kinds)
		}
	}
}

// TestStrictDecoderRefuses: the decoder the manifests pass refuses what a
// lenient one would let through.
func TestStrictDecoderRefuses(t *testing.T) {
	t.Parallel()
	const good = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  clusterIP: None\n"
	if _, err := Decode([]byte(good)); err != nil {
		t.Fatalf("a good Service: %v", err)
	}
	for _, tc := range []struct{ name, doc string }{
		{"unknown field", good + "  clusterIp: None\n"},
		{"field in another case", "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ClusterIP: None\n"},
		{"duplicate field", good + "  clusterIP: 192.0.2.1\n"},
		{"unknown kind", "apiVersion: v1\nkind: Servise\nmetadata:\n  name: x\n"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replicas: two\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Decode([]byte(tc.doc)); err == nil {
				t.Errorf("decoded without error:\n%s", tc.doc)
			}
		})
	}
}

// TestKustomization: the kustomization names every manifest (but the
// Secret example, which it generates instead), one namespace holds
// everything, and the admin token Secret it generates is the one the
// Deployment mounts.
func TestKustomization(t *testing.T) {
	s := manifests(t)
	k, err := LoadKustomization(manifestDir)
	if err != nil {
		t.Fatal(err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization: apiVersion %q kind %q", k.APIVersion, k.Kind)
	}
	files, err := ManifestFiles(manifestDir)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".example.yaml") {
			want = append(want, filepath.Base(f))
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, want the manifests %v", got, want)
	}
	for _, o := range s.Objects {
		m := o.Obj.(metav1.Object)
		ns := m.GetNamespace()
		if _, isNS := o.Obj.(*corev1.Namespace); isNS {
			ns = m.GetName()
		}
		if ns != k.Namespace {
			t.Errorf("%s: %s is in namespace %q, the kustomization's is %q", o.File, m.GetName(), ns, k.Namespace)
		}
	}
	d, c := tetherDeployment(t)
	args, _ := tetherSettings(t)
	tokenPath, _ := args.Last("admin-token-file")
	vol, key := mountFor(t, d, c, tokenPath)
	if vol.Secret == nil {
		t.Fatalf("--admin-token-file=%s: volume %s is not a Secret", tokenPath, vol.Name)
	}
	var gen *SecretGenerator
	for i := range k.SecretGenerator {
		if k.SecretGenerator[i].Name == vol.Secret.SecretName {
			gen = &k.SecretGenerator[i]
		}
	}
	if gen == nil {
		t.Fatalf("the kustomization generates no Secret %q (the admin token)", vol.Secret.SecretName)
	}
	if len(gen.Files) != 1 || !strings.HasPrefix(gen.Files[0], key+"=") {
		t.Errorf("secretGenerator %s files %v, want one %s=FILE", gen.Name, gen.Files, key)
	}
	example := false
	for _, sec := range s.Secrets {
		if sec.Name == vol.Secret.SecretName {
			example = true
			if _, ok := sec.StringData[key]; !ok {
				t.Errorf("secret example %s has no key %q", sec.Name, key)
			}
		}
	}
	if !example {
		t.Errorf("no Secret example named %s", vol.Secret.SecretName)
	}
}

// podTemplates is every workload's pod template, by workload.
func podTemplates(s *Set) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, d := range s.Deployments {
		out["deployment "+d.Name] = &d.Spec.Template
	}
	for _, st := range s.StatefulSets {
		out["statefulset "+st.Name] = &st.Spec.Template
	}
	return out
}

// TestSelectors: each workload selects its own pods, and each Service and
// PodDisruptionBudget selects the pods of exactly one workload.
func TestSelectors(t *testing.T) {
	s := manifests(t)
	check := func(what string, sel labels.Selector) {
		t.Helper()
		if sel.Empty() {
			t.Errorf("%s: empty selector (selects every pod)", what)
			return
		}
		var matched []string
		for name, tpl := range podTemplates(s) {
			if sel.Matches(labels.Set(tpl.Labels)) {
				matched = append(matched, name)
			}
		}
		if len(matched) != 1 {
			t.Errorf("%s: selector %s matches %v, want one workload's pods", what, sel, matched)
		}
	}
	selector := func(ls *metav1.LabelSelector) labels.Selector {
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			t.Fatal(err)
		}
		return sel
	}
	for _, d := range s.Deployments {
		if !selector(d.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("deployment %s: selector does not match its pod labels", d.Name)
		}
		check("deployment "+d.Name, selector(d.Spec.Selector))
	}
	for _, st := range s.StatefulSets {
		if !selector(st.Spec.Selector).Matches(labels.Set(st.Spec.Template.Labels)) {
			t.Errorf("statefulset %s: selector does not match its pod labels", st.Name)
		}
		check("statefulset "+st.Name, selector(st.Spec.Selector))
	}
	for _, svc := range s.Services {
		check("service "+svc.Name, labels.SelectorFromSet(svc.Spec.Selector))
	}
	for _, p := range s.PDBs {
		check("poddisruptionbudget "+p.Name, selector(p.Spec.Selector))
	}
	for name, tpl := range podTemplates(s) {
		covered := false
		for _, p := range s.PDBs {
			if selector(p.Spec.Selector).Matches(labels.Set(tpl.Labels)) {
				covered = true
			}
		}
		if !covered {
			t.Errorf("%s: no PodDisruptionBudget", name)
		}
	}
}

// TestRestricted: every pod meets the "restricted" Pod Security Standard
// the namespace enforces, and listens above 1024.
func TestRestricted(t *testing.T) {
	s := manifests(t)
	for _, ns := range s.Namespaces {
		if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Errorf("namespace %s does not enforce the restricted pod security standard", ns.Name)
		}
	}
	for name, tpl := range podTemplates(s) {
		ps := tpl.Spec.SecurityContext
		if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
		}
		if ps == nil || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod seccompProfile is not RuntimeDefault", name)
		}
		if ps != nil && ps.RunAsUser != nil && *ps.RunAsUser == 0 {
			t.Errorf("%s: runAsUser 0", name)
		}
		if tpl.Spec.HostNetwork || tpl.Spec.HostPID || tpl.Spec.HostIPC {
			t.Errorf("%s: shares a host namespace", name)
		}
		for _, c := range append(slices.Clone(tpl.Spec.InitContainers), tpl.Spec.Containers...) {
			cs := c.SecurityContext
			if cs == nil {
				t.Errorf("%s/%s: no securityContext", name, c.Name)
				continue
			}
			if cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation {
				t.Errorf("%s/%s: allowPrivilegeEscalation is not false", name, c.Name)
			}
			if cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem {
				t.Errorf("%s/%s: readOnlyRootFilesystem is not true", name, c.Name)
			}
			if cs.Privileged != nil && *cs.Privileged {
				t.Errorf("%s/%s: privileged", name, c.Name)
			}
			if cs.Capabilities == nil || !slices.Contains(cs.Capabilities.Drop, "ALL") || len(cs.Capabilities.Add) > 0 {
				t.Errorf("%s/%s: capabilities must drop ALL and add none: %+v", name, c.Name, cs.Capabilities)
			}
			if cs.RunAsUser != nil && *cs.RunAsUser == 0 {
				t.Errorf("%s/%s: runAsUser 0", name, c.Name)
			}
			for _, p := range c.Ports {
				if p.ContainerPort < 1024 {
					t.Errorf("%s/%s: port %d is below 1024 (it would need NET_BIND_SERVICE)", name, c.Name, p.ContainerPort)
				}
			}
		}
	}
}

// listenPort is the port of a listen address (":8080", "0.0.0.0:8443").
func listenPort(t *testing.T, flag, addr string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("--%s=%s: %v", flag, addr, err)
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil || n <= 0 {
		t.Fatalf("--%s=%s: port %q", flag, addr, port)
	}
	return int32(n)
}

func setting(t *testing.T, name string) (string, bool) {
	t.Helper()
	args, cfg := tetherSettings(t)
	v := Setting(args, cfg, tetherHelp(t).Defaults, name)
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

func duration(t *testing.T, name string) time.Duration {
	t.Helper()
	v, _ := setting(t, name)
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s %q: %v", name, v, err)
	}
	return d
}

// TestTetherDeployment: replicas, ports, probes, mounted files, drain
// timing and resources of tether's Deployment and Service agree with each
// other and with the flags tether runs with.
func TestTetherDeployment(t *testing.T) {
	s := manifests(t)
	d, c := tetherDeployment(t)
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("deployment tether: replicas %d, want at least 2 (unset is 1)", ptr.Deref(d.Spec.Replicas, 1))
	}
	if su := d.Spec.Strategy.RollingUpdate; su == nil || su.MaxUnavailable == nil || su.MaxUnavailable.IntValue() != 0 {
		t.Errorf("deployment tether: a rollout may stop a pod before its successor is ready (maxUnavailable not 0)")
	}

	// Ports: each listener has a named container port with its number.
	named := map[string]int32{}
	for flag, portName := range map[string]string{"listen": "http", "tls-listen": "https", "admin": "admin"} {
		addr, ok := setting(t, flag)
		if !ok || addr == "" {
			t.Errorf("--%s is not set", flag)
			continue
		}
		want := listenPort(t, flag, addr)
		got, ok := containerPort(c, intstr.FromString(portName))
		if !ok || got != want {
			t.Errorf("--%s=%s: container port %q is %d, want %d", flag, addr, portName, got, want)
		}
		named[portName] = want
	}
	if len(c.Ports) != len(named) {
		t.Errorf("container ports %v, want one per listener %v", c.Ports, named)
	}

	// Probes: on the admin listener, /healthz for readiness, /livez for
	// liveness; no token, so no header.
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/healthz"}, {"livenessProbe", c.LivenessProbe, "/livez"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", p.what)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("%s path %q, want %q", p.what, g.Path, p.path)
		}
		if port, ok := containerPort(c, g.Port); !ok || port != named["admin"] {
			t.Errorf("%s port %s is %d, want the admin listener's %d", p.what, g.Port.String(), port, named["admin"])
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s scheme %s: the admin listener is plain HTTP", p.what, g.Scheme)
		}
	}

	// The admin listener is off loopback (the kubelet probes the pod's
	// address), so tether requires its token.
	if tok, _ := setting(t, "admin-token-file"); tok == "" {
		t.Errorf("--admin off loopback needs --admin-token-file")
	}
	// Every file tether reads is mounted.
	args, _ := tetherSettings(t)
	for _, flag := range []string{"config", "cert", "key", "admin-token-file"} {
		for _, path := range args[flag] {
			mountFor(t, d, c, path)
		}
	}

	// Stopping: the grace period outlasts the drain delay and timeout.
	delay, timeout := duration(t, "drain-delay"), duration(t, "drain-timeout")
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= delay+timeout {
		t.Errorf("terminationGracePeriodSeconds %v is not above drain-delay %v + drain-timeout %v", grace, delay, timeout)
	}
	if delay == 0 && (c.Lifecycle == nil || c.Lifecycle.PreStop == nil) {
		t.Errorf("neither --drain-delay nor a preStop hook keeps tether serving while the load balancer takes it out")
	}

	// PROXY protocol: trusted networks given and valid.
	if pp, _ := setting(t, "proxy-protocol"); pp == "true" {
		_, cfg := tetherSettings(t)
		from := Setting(args, cfg, nil, "proxy-protocol-from")
		if len(from) == 0 {
			t.Errorf("proxy-protocol without proxy-protocol-from")
		}
		for _, f := range from {
			for n := range strings.SplitSeq(f, ",") {
				if _, err := netip.ParsePrefix(strings.TrimSpace(n)); err != nil {
					t.Errorf("proxy-protocol-from %q: %v", n, err)
				}
			}
		}
	}

	// Resources: memory requested and limited, GOMEMLIMIT below the limit.
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Memory().IsZero() || req.Cpu().IsZero() || lim.Memory().IsZero() {
		t.Errorf("resources: want cpu and memory requests and a memory limit: %+v", c.Resources)
	}
	if lim.Memory().Cmp(*req.Memory()) < 0 {
		t.Errorf("memory limit %s below the request %s", lim.Memory(), req.Memory())
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			q, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
			if err != nil {
				t.Errorf("GOMEMLIMIT %q: %v", e.Value, err)
			} else if q.Cmp(*lim.Memory()) >= 0 {
				t.Errorf("GOMEMLIMIT %s is not below the memory limit %s", e.Value, lim.Memory())
			}
		}
	}

	// The public Service: a load balancer keeping the client's node,
	// mapping 80 and 443 to the listeners, never the admin port.
	var svc *corev1.Service
	for _, sv := range s.Services {
		if labels.SelectorFromSet(sv.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			svc = sv
		}
	}
	if svc == nil {
		t.Fatalf("no Service selects tether's pods")
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("service %s: type %s, externalTrafficPolicy %s; want LoadBalancer, Local", svc.Name, svc.Spec.Type, svc.Spec.ExternalTrafficPolicy)
	}
	want := map[int32]int32{80: named["http"], 443: named["https"]}
	for _, p := range svc.Spec.Ports {
		got, ok := containerPort(c, p.TargetPort)
		if !ok {
			t.Errorf("service %s port %d: target %s is no container port", svc.Name, p.Port, p.TargetPort.String())
			continue
		}
		if got != want[p.Port] {
			t.Errorf("service %s port %d goes to %d, want %d", svc.Name, p.Port, got, want[p.Port])
		}
		delete(want, p.Port)
	}
	if len(want) > 0 {
		t.Errorf("service %s lacks ports %v", svc.Name, want)
	}
}

// TestNodeDiscovery: tether's --node-srv names the SRV records of the
// nodes' headless Service, and its health checks use the nodes' health
// path.
func TestNodeDiscovery(t *testing.T) {
	s := manifests(t)
	args, cfg := tetherSettings(t)
	srv := Setting(args, cfg, nil, "node-srv")
	if len(srv) != 1 {
		t.Fatalf("node-srv %v, want one name", srv)
	}
	if len(s.StatefulSets) != 1 {
		t.Fatalf("%d StatefulSets, want the nodes' one", len(s.StatefulSets))
	}
	st := s.StatefulSets[0]
	var headless *corev1.Service
	for _, svc := range s.Services {
		if svc.Name == st.Spec.ServiceName && svc.Namespace == st.Namespace {
			headless = svc
		}
	}
	if headless == nil {
		t.Fatalf("statefulset %s: serviceName %q names no Service", st.Name, st.Spec.ServiceName)
	}
	if headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("service %s: clusterIP %q, want None (headless: per-pod records)", headless.Name, headless.Spec.ClusterIP)
	}
	if !labels.SelectorFromSet(headless.Spec.Selector).Matches(labels.Set(st.Spec.Template.Labels)) {
		t.Errorf("service %s does not select the nodes' pods", headless.Name)
	}
	node := nodeContainer(t, st)
	var names []string
	for _, p := range headless.Spec.Ports {
		if p.Name == "" {
			continue
		}
		if _, ok := containerPort(node, p.TargetPort); !ok {
			t.Errorf("service %s port %s: target %s is no port of the nodes", headless.Name, p.Name, p.TargetPort.String())
		}
		proto := strings.ToLower(string(p.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		names = append(names, fmt.Sprintf("_%s._%s.%s.%s.svc.cluster.local", p.Name, proto, headless.Name, headless.Namespace))
	}
	if !slices.Contains(names, strings.TrimSuffix(srv[0], ".")) {
		t.Errorf("node-srv %q is none of the SRV names the headless Service publishes: %v", srv[0], names)
	}
	if node.ReadinessProbe == nil || node.ReadinessProbe.HTTPGet == nil {
		t.Fatalf("statefulset %s: no httpGet readinessProbe", st.Name)
	}
	if hp, _ := setting(t, "health-path"); hp != node.ReadinessProbe.HTTPGet.Path || hp != "/cobrowse/health" {
		t.Errorf("tether's health-path %q, the nodes' readiness path %q, want both /cobrowse/health", hp, node.ReadinessProbe.HTTPGet.Path)
	}
}

func nodeContainer(t *testing.T, st *appsv1.StatefulSet) *corev1.Container {
	t.Helper()
	if len(st.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("statefulset %s: %d containers, want one", st.Name, len(st.Spec.Template.Spec.Containers))
	}
	return &st.Spec.Template.Spec.Containers[0]
}

// TestTetherFlagsExist: every flag of the Deployment's args and every key
// of its configuration file is one of `tether --help`.
func TestTetherFlagsExist(t *testing.T) {
	h := tetherHelp(t)
	args, cfg := tetherSettings(t)
	for name := range args {
		if !h.Flags[name] {
			t.Errorf("argument --%s: tether has no such flag", name)
		}
	}
	for key := range cfg {
		if !h.Flags[key] || key == "config" {
			t.Errorf("configuration key %s: tether has no such flag", key)
		}
	}
	if os.Getenv("TETHER_BIN") != "" {
		t.Logf("checked against %s", tetherBin(t))
	}
}

// TestDisruptionBudgets: each budget lets a drain take one pod at a time
// (not none, which would block node drains, and not all).
func TestDisruptionBudgets(t *testing.T) {
	s := manifests(t)
	replicas := map[string]int32{}
	tpls := map[string]map[string]string{}
	for _, d := range s.Deployments {
		replicas[d.Name], tpls[d.Name] = *d.Spec.Replicas, d.Spec.Template.Labels
	}
	for _, st := range s.StatefulSets {
		replicas[st.Name], tpls[st.Name] = *st.Spec.Replicas, st.Spec.Template.Labels
	}
	for _, p := range s.PDBs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		for name, l := range tpls {
			if !sel.Matches(labels.Set(l)) {
				continue
			}
			n := int(replicas[name])
			var down int
			switch {
			case p.Spec.MaxUnavailable != nil:
				down, err = intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, n, true)
			case p.Spec.MinAvailable != nil:
				var up int
				up, err = intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, n, true)
				down = n - up
			default:
				t.Errorf("poddisruptionbudget %s: neither minAvailable nor maxUnavailable", p.Name)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if down < 1 || down >= n {
				t.Errorf("poddisruptionbudget %s: %d of %s's %d pods may be down at once, want at least 1 and fewer than all", p.Name, down, name, n)
			}
		}
	}
}
