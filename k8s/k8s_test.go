// Package k8s_test checks the Kubernetes manifests in this directory offline: it renders every
// overlay with the kustomize library (as `kustomize build` would), decodes every object strictly
// into its Kubernetes or Prometheus Operator Go type, so a misspelled or misplaced field fails,
// and then checks the invariants a schema cannot express (probes, limits, the restricted
// securityContext, each overlay's own region, selectors that really select, the migration Job
// in one region only, and so on). It is not a deployment tool and never talks to a cluster.
package k8s_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/kio"
)

// Facts the manifests must agree with; they come from the application's configuration contract,
// not from the manifests, so the test cannot pass by reading back what it checks.
const (
	appImageName   = "ghcr.io/7awel/wallet"
	namespacePfx   = "wallet-"
	regionLabel    = "topology.kubernetes.io/region"
	podRegionLabel = "7awel.io/region"
	apiName        = "wallet-api"
	secretName     = "wallet-secrets"
	httpPort       = 8080
	metricsPort    = 9090
	cockroachSQL   = 26257
)

// secretEnv are the API's settings that must come from a Secret, never from a literal.
var secretEnv = []string{
	"DATABASE_URL", "OPS_API_KEY", "JWT_SIGNING_KEY", "PIN_PEPPER", "PII_KEYS",
	"BLIND_INDEX_KEY", "OTP_HMAC_KEY", "SMS_WEBHOOK_URL",
}

// plainEnv are the API's non-secret settings that must be present.
var plainEnv = []string{
	"REGION", "REGIONS", "PRIMARY_REGION", "APP_ENV", "HTTP_ADDR", "ADMIN_ADDR", "LOG_LEVEL",
	"SHUTDOWN_TIMEOUT",
}

// object is one rendered resource, decoded into its typed struct.
type object struct {
	APIVersion, Kind, Name, Namespace string
	Obj                               any
}

// overlay is one region's rendered output.
type overlay struct {
	Region  string
	Objects []object
}

// kinds maps apiVersion/kind to a constructor for the typed struct. Anything else is rejected:
// a kind this test does not know is a kind whose invariants nobody checks.
var kinds = map[string]func() any{
	"v1/Namespace":                            func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
	"batch/v1/Job":                            func() any { return &batchv1.Job{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
}

// strictDecode decodes one JSON object into a typed value, rejecting unknown fields and
// trailing data, and checks that apiVersion/kind survived (a wrong constructor would lose them).
func strictDecode(data []byte) (object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return object{}, err
	}
	mk, ok := kinds[head.APIVersion+"/"+head.Kind]
	if !ok {
		return object{}, fmt.Errorf("%s %s/%s: no registered type for this kind", head.APIVersion, head.Kind, head.Metadata.Name)
	}
	v := mk()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return object{}, fmt.Errorf("%s %s/%s: %w", head.APIVersion, head.Kind, head.Metadata.Name, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return object{}, fmt.Errorf("%s/%s: trailing data after the object", head.Kind, head.Metadata.Name)
	}
	return object{head.APIVersion, head.Kind, head.Metadata.Name, head.Metadata.Namespace, v}, nil
}

// renderedJSON caches each overlay's rendered objects as JSON: rendering is the slow part, and
// tests that mutate objects decode fresh copies from it.
var (
	renderOnce sync.Once
	renderRaw  map[string][][]byte
	renderErr  error
)

func overlayRegions(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("overlays")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatal("no overlays under k8s/overlays")
	}
	return out
}

func renderAll(t *testing.T) map[string][][]byte {
	t.Helper()
	regions := overlayRegions(t)
	renderOnce.Do(func() {
		renderRaw = map[string][][]byte{}
		k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
		fs := filesys.MakeFsOnDisk()
		for _, r := range regions {
			m, err := k.Run(fs, filepath.Join("overlays", r))
			if err != nil {
				renderErr = fmt.Errorf("kustomize build overlays/%s: %w", r, err)
				return
			}
			for _, res := range m.Resources() {
				b, err := res.MarshalJSON()
				if err != nil {
					renderErr = fmt.Errorf("overlays/%s: %w", r, err)
					return
				}
				renderRaw[r] = append(renderRaw[r], b)
			}
		}
	})
	if renderErr != nil {
		t.Fatal(renderErr)
	}
	return renderRaw
}

// overlays renders (once) and decodes (every call, so callers may mutate) all overlays.
func overlays(t *testing.T) []*overlay {
	t.Helper()
	raw := renderAll(t)
	var out []*overlay
	for _, r := range overlayRegions(t) {
		o := &overlay{Region: r}
		for _, b := range raw[r] {
			obj, err := strictDecode(b)
			if err != nil {
				t.Fatalf("overlays/%s: %v", r, err)
			}
			o.Objects = append(o.Objects, obj)
		}
		out = append(out, o)
	}
	return out
}

func TestEveryOverlayRendersAndDecodesStrictly(t *testing.T) {
	for _, o := range overlays(t) {
		if len(o.Objects) == 0 {
			t.Errorf("overlays/%s rendered nothing", o.Region)
		}
		counts := map[string]int{}
		for _, obj := range o.Objects {
			counts[obj.Kind]++
		}
		// The pieces the deployment issue asks for, in every region.
		for _, k := range []string{"Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment",
			"StatefulSet", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy",
			"ServiceMonitor", "PrometheusRule"} {
			if counts[k] == 0 {
				t.Errorf("overlays/%s: no %s", o.Region, k)
			}
		}
		// The Grafana dashboard from k8s/monitoring: a ConfigMap the Grafana sidecar picks up,
		// holding JSON.
		dashboards := 0
		for _, cm := range all[*corev1.ConfigMap](o) {
			if cm.Labels["grafana_dashboard"] != "1" {
				continue
			}
			for k, v := range cm.Data {
				if !json.Valid([]byte(v)) {
					t.Errorf("overlays/%s: ConfigMap %s key %s is not JSON", o.Region, cm.Name, k)
				}
				dashboards++
			}
		}
		if dashboards == 0 {
			t.Errorf("overlays/%s: no Grafana dashboard ConfigMap (label grafana_dashboard=1)", o.Region)
		}
	}
}

func TestStrictDecodeRejectsMistakes(t *testing.T) {
	for name, doc := range map[string]string{
		"misspelled field": `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replica":3}}`,
		"misplaced field":  `{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"ports":[{"port":80,"containerPort":80}]}}`,
		"wrong type":       `{"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"x"},"spec":{"maxUnavailable":{"a":1}}}`,
		"unknown kind":     `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`,
		"old apiVersion":   `{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"x"}}`,
		"crd field":        `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"x"},"spec":{"endpoints":[{"prot":"http"}]}}`,
	} {
		if _, err := strictDecode([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := strictDecode([]byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"ports":[{"port":80}]}}`)); err != nil {
		t.Errorf("a valid Service was rejected: %v", err)
	}
}

func TestOverlayInvariants(t *testing.T) {
	for _, o := range overlays(t) {
		t.Run(o.Region, func(t *testing.T) {
			for _, p := range checkOverlay(o) {
				t.Error(p)
			}
		})
	}
}

func TestAcrossOverlays(t *testing.T) {
	for _, p := range checkAcrossOverlays(overlays(t)) {
		t.Error(p)
	}
}

// TestChecksCatchBreakage breaks one rendered object at a time and expects the checks to say
// so: a checker that cannot fail proves nothing.
func TestChecksCatchBreakage(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(o *overlay)
		want   string
	}{
		{"no readiness probe", func(o *overlay) { apiContainer(o).ReadinessProbe = nil }, "no readinessProbe"},
		{"no liveness probe on cockroach", func(o *overlay) {
			find[*appsv1.StatefulSet](o, "cockroachdb").Spec.Template.Spec.Containers[0].LivenessProbe = nil
		}, "no livenessProbe"},
		{"latest image", func(o *overlay) { apiContainer(o).Image = appImageName + ":latest" }, "not pinned"},
		{"untagged image", func(o *overlay) { apiContainer(o).Image = "7awel" }, "not pinned"},
		{"no memory limit", func(o *overlay) { delete(apiContainer(o).Resources.Limits, corev1.ResourceMemory) }, "limits.memory"},
		{"privilege escalation", func(o *overlay) {
			v := true
			apiContainer(o).SecurityContext.AllowPrivilegeEscalation = &v
		}, "allowPrivilegeEscalation"},
		{"capabilities kept", func(o *overlay) { apiContainer(o).SecurityContext.Capabilities.Drop = nil }, "drop ALL"},
		{"writable root", func(o *overlay) {
			v := false
			apiContainer(o).SecurityContext.ReadOnlyRootFilesystem = &v
		}, "readOnlyRootFilesystem"},
		{"short grace period", func(o *overlay) {
			v := int64(20)
			find[*appsv1.Deployment](o, apiName).Spec.Template.Spec.TerminationGracePeriodSeconds = &v
		}, "terminationGracePeriodSeconds"},
		{"wrong region", func(o *overlay) { configMap(o).Data["REGION"] = "xx-none1" }, "REGION"},
		{"wrong namespace", func(o *overlay) { find[*corev1.Service](o, apiName).Namespace = "default" }, "namespace"},
		{"service selects nothing", func(o *overlay) {
			find[*corev1.Service](o, apiName).Spec.Selector = map[string]string{"app.kubernetes.io/name": "nope"}
		}, "selects no Deployment"},
		{"pdb selects nothing", func(o *overlay) {
			find[*policyv1.PodDisruptionBudget](o, apiName).Spec.Selector.MatchLabels = map[string]string{"x": "y"}
		}, "selects no"},
		{"servicemonitor port", func(o *overlay) {
			find[*monitoringv1.ServiceMonitor](o, apiName).Spec.Endpoints[0].Port = "web"
		}, "no port named"},
		{"literal secret", func(o *overlay) {
			c := apiContainer(o)
			for i := range c.Env {
				if c.Env[i].Name == "PIN_PEPPER" {
					c.Env[i] = corev1.EnvVar{Name: "PIN_PEPPER", Value: "hunter2"}
				}
			}
		}, "secretKeyRef"},
		{"metrics open to ingress", func(o *overlay) {
			np := find[*networkingv1.NetworkPolicy](o, "wallet-api-ingress")
			np.Spec.Ingress[1].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] = "ingress-nginx"
		}, "9090"},
		{"token automounted", func(o *overlay) {
			v := true
			find[*appsv1.Deployment](o, apiName).Spec.Template.Spec.AutomountServiceAccountToken = &v
		}, "automountServiceAccountToken"},
		{"locality region", func(o *overlay) {
			c := &find[*appsv1.StatefulSet](o, "cockroachdb").Spec.Template.Spec.Containers[0]
			for i, a := range c.Args {
				if strings.HasPrefix(a, "--locality=") {
					c.Args[i] = "--locality=region=elsewhere,zone=$(ZONE)"
				}
			}
		}, "--locality"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := overlays(t)[0]
			if ps := checkOverlay(o); len(ps) != 0 {
				t.Fatalf("the unbroken overlay already fails: %v", ps)
			}
			tc.mutate(o)
			ps := checkOverlay(o)
			if !slices.ContainsFunc(ps, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("expected a problem mentioning %q, got %q", tc.want, ps)
			}
		})
	}

	t.Run("migration job in two regions", func(t *testing.T) {
		ovs := overlays(t)
		var job object
		for _, obj := range ovs[slices.IndexFunc(ovs, func(o *overlay) bool { return o.Region == "me-central1" })].Objects {
			if obj.Kind == "Job" && obj.Name == "wallet-migrate" {
				job = obj
			}
		}
		for _, o := range ovs {
			if o.Region != "me-central1" {
				o.Objects = append(o.Objects, job)
				break
			}
		}
		ps := checkAcrossOverlays(ovs)
		if !slices.ContainsFunc(ps, func(p string) bool { return strings.Contains(p, "migrate up") }) {
			t.Errorf("a second migration Job went unnoticed: %q", ps)
		}
	})
}

// ---- lookups ----

func find[T any](o *overlay, name string) T {
	for _, obj := range o.Objects {
		if v, ok := obj.Obj.(T); ok && obj.Name == name {
			return v
		}
	}
	var zero T
	panic(fmt.Sprintf("overlays/%s: no %T named %s", o.Region, zero, name))
}

func all[T any](o *overlay) []T {
	var out []T
	for _, obj := range o.Objects {
		if v, ok := obj.Obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func apiContainer(o *overlay) *corev1.Container {
	return &find[*appsv1.Deployment](o, apiName).Spec.Template.Spec.Containers[0]
}

// configMap is the generated wallet-config (its name carries a content hash).
func configMap(o *overlay) *corev1.ConfigMap {
	for _, cm := range all[*corev1.ConfigMap](o) {
		if strings.HasPrefix(cm.Name, "wallet-config-") {
			return cm
		}
	}
	return nil
}

// workload is anything with a pod template.
type workload struct {
	Kind, Name string
	Template   *corev1.PodTemplateSpec
	Selector   *metav1.LabelSelector
	Claims     []string // a StatefulSet's volumeClaimTemplates, mountable like volumes
}

func workloads(o *overlay) []workload {
	var out []workload
	for _, d := range all[*appsv1.Deployment](o) {
		out = append(out, workload{"Deployment", d.Name, &d.Spec.Template, d.Spec.Selector, nil})
	}
	for _, s := range all[*appsv1.StatefulSet](o) {
		var claims []string
		for _, c := range s.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		out = append(out, workload{"StatefulSet", s.Name, &s.Spec.Template, s.Spec.Selector, claims})
	}
	for _, j := range all[*batchv1.Job](o) {
		out = append(out, workload{"Job", j.Name, &j.Spec.Template, nil, nil})
	}
	return out
}

// resolveEnv returns a container's environment as the kubelet would build it from literals and
// ConfigMaps; values from other sources (Secrets, the downward API) are reported in from.
func resolveEnv(o *overlay, c *corev1.Container) (vals map[string]string, from map[string]*corev1.EnvVarSource, problems []string) {
	vals, from = map[string]string{}, map[string]*corev1.EnvVarSource{}
	cms := map[string]*corev1.ConfigMap{}
	for _, cm := range all[*corev1.ConfigMap](o) {
		cms[cm.Name] = cm
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, ok := cms[ef.ConfigMapRef.Name]
			if !ok {
				problems = append(problems, fmt.Sprintf("container %s: envFrom ConfigMap %q is not rendered", c.Name, ef.ConfigMapRef.Name))
				continue
			}
			for k, v := range cm.Data {
				vals[ef.Prefix+k] = v
			}
		case ef.SecretRef != nil:
			problems = append(problems, fmt.Sprintf("container %s: envFrom a whole Secret hides which keys it needs; use secretKeyRef", c.Name))
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vals[e.Name] = e.Value
			delete(from, e.Name)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, ok := cms[ref.Name]
			if !ok {
				problems = append(problems, fmt.Sprintf("container %s: %s refers to ConfigMap %q, which is not rendered", c.Name, e.Name, ref.Name))
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				problems = append(problems, fmt.Sprintf("container %s: %s refers to missing key %s in ConfigMap %s", c.Name, e.Name, ref.Key, ref.Name))
			}
			vals[e.Name] = v
			delete(from, e.Name)
		default:
			delete(vals, e.Name)
			from[e.Name] = e.ValueFrom
		}
	}
	return vals, from, problems
}

func selectorMatches(sel *metav1.LabelSelector, lbls map[string]string) bool {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return false // an empty selector selecting everything is never what a manifest here means
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(lbls))
}

func setMatches(sel map[string]string, lbls map[string]string) bool {
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(lbls))
}

// imagePinned accepts name:tag (tag not "latest") or name@sha256:digest.
func imagePinned(image string) bool {
	if i := strings.Index(image, "@sha256:"); i > 0 {
		return len(image)-i-len("@sha256:") == 64
	}
	last := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(last, ":")
	return i > 0 && i < len(last)-1 && last[i+1:] != "latest"
}

func addrPort(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return -1
	}
	return n
}

func namedPort(ports []corev1.ContainerPort, name string) (int32, bool) {
	for _, p := range ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// ---- per-overlay checks ----

func checkOverlay(o *overlay) []string {
	var ps []string
	add := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }
	ns := namespacePfx + o.Region

	// Namespace, with the restricted Pod Security Standard enforced.
	for _, obj := range o.Objects {
		meta := obj.Obj.(metav1.Object)
		if obj.Kind == "Namespace" {
			if obj.Name != ns {
				add("Namespace %s: want %s", obj.Name, ns)
			}
			if meta.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
				add("Namespace %s: pod-security.kubernetes.io/enforce is not restricted", obj.Name)
			}
		} else if meta.GetNamespace() != ns {
			add("%s %s: namespace %q, want %q", obj.Kind, obj.Name, meta.GetNamespace(), ns)
		}
		if meta.GetLabels()[regionLabel] != o.Region {
			add("%s %s: label %s=%q, want %q", obj.Kind, obj.Name, regionLabel, meta.GetLabels()[regionLabel], o.Region)
		}
		if obj.Kind == "Secret" {
			add("Secret %s is rendered: secret values are never committed (see k8s/README.md)", obj.Name)
		}
	}
	if !slices.ContainsFunc(o.Objects, func(obj object) bool { return obj.Kind == "Namespace" }) {
		add("no Namespace object")
	}

	// The region settings.
	cm := configMap(o)
	var regions []string
	if cm == nil {
		add("no wallet-config ConfigMap")
	} else {
		if cm.Data["REGION"] != o.Region {
			add("wallet-config: REGION=%q, want %q", cm.Data["REGION"], o.Region)
		}
		regions = strings.Split(cm.Data["REGIONS"], ",")
		if !slices.Contains(regions, o.Region) {
			add("wallet-config: REGIONS=%q does not include %s", cm.Data["REGIONS"], o.Region)
		}
		if !slices.Contains(regions, cm.Data["PRIMARY_REGION"]) {
			add("wallet-config: PRIMARY_REGION=%q is not in REGIONS", cm.Data["PRIMARY_REGION"])
		}
	}

	ps = append(ps, checkPods(o)...)
	ps = append(ps, checkAPI(o)...)
	ps = append(ps, checkCockroach(o, regions)...)
	ps = append(ps, checkSelectors(o)...)
	ps = append(ps, checkNetworkPolicies(o)...)
	return ps
}

// checkPods applies the rules every pod in every workload must follow.
func checkPods(o *overlay) []string {
	var ps []string
	sas := map[string]*corev1.ServiceAccount{}
	for _, sa := range all[*corev1.ServiceAccount](o) {
		sas[sa.Name] = sa
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			ps = append(ps, fmt.Sprintf("ServiceAccount %s: automountServiceAccountToken is not false", sa.Name))
		}
	}
	for _, w := range workloads(o) {
		add := func(format string, args ...any) {
			ps = append(ps, fmt.Sprintf("%s %s: ", w.Kind, w.Name)+fmt.Sprintf(format, args...))
		}
		spec := &w.Template.Spec
		if len(spec.Containers) == 0 {
			add("empty pod template")
			continue
		}
		if w.Template.Labels[podRegionLabel] != o.Region {
			add("pod label %s=%q, want %q", podRegionLabel, w.Template.Labels[podRegionLabel], o.Region)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			add("automountServiceAccountToken is not false on the pod")
		}
		if _, ok := sas[spec.ServiceAccountName]; !ok {
			add("serviceAccountName %q is not rendered in this overlay", spec.ServiceAccountName)
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			add("uses a host namespace")
		}
		psc := spec.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		if psc.RunAsUser != nil && *psc.RunAsUser == 0 {
			add("pod runAsUser 0")
		}
		vols := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			vols[v.Name] = v
		}
		for _, c := range w.Claims {
			vols[c] = corev1.Volume{Name: c}
		}
		containers := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
		for i := range containers {
			c := &containers[i]
			cadd := func(format string, args ...any) { add("container %s: "+format, append([]any{c.Name}, args...)...) }
			if !imagePinned(c.Image) {
				cadd("image %q is not pinned to a tag (other than latest) or digest", c.Image)
			}
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := c.Resources.Requests[res]; !ok || q.IsZero() {
					cadd("no requests.%s", res)
				}
				if q, ok := c.Resources.Limits[res]; !ok || q.IsZero() {
					cadd("no limits.%s", res)
				}
			}
			sc := c.SecurityContext
			if sc == nil {
				sc = &corev1.SecurityContext{}
			}
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil {
				nonRoot = psc.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				cadd("runAsNonRoot is not true")
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				cadd("runAsUser 0")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				cadd("allowPrivilegeEscalation is not false")
			}
			if sc.Privileged != nil && *sc.Privileged {
				cadd("privileged")
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				cadd("readOnlyRootFilesystem is not true")
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				cadd("capabilities must drop ALL and add none")
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				cadd("seccompProfile is not RuntimeDefault")
			}
			for _, m := range c.VolumeMounts {
				if _, ok := vols[m.Name]; !ok {
					cadd("volumeMount %s has no volume", m.Name)
				}
			}
			_, _, envProblems := resolveEnv(o, c)
			for _, p := range envProblems {
				add("%s", p)
			}
			// Sensitive-looking variables must not carry literal values.
			for _, e := range c.Env {
				if e.ValueFrom == nil && looksSecret(e.Name) {
					cadd("%s has a literal value; use secretKeyRef", e.Name)
				}
			}
			if w.Kind == "Job" {
				continue
			}
			// Long-running containers: the kubelet must be able to tell alive from ready.
			if c.LivenessProbe == nil {
				cadd("no livenessProbe")
			}
			if c.ReadinessProbe == nil {
				cadd("no readinessProbe")
			}
			for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				if p == nil || p.HTTPGet == nil {
					continue
				}
				if port := p.HTTPGet.Port; port.StrVal != "" {
					if _, ok := namedPort(c.Ports, port.StrVal); !ok {
						cadd("%s probe uses port %q, which the container does not declare", name, port.StrVal)
					}
				}
			}
		}
		if w.Kind == "Deployment" || w.Kind == "StatefulSet" {
			if !slices.ContainsFunc(spec.TopologySpreadConstraints, func(c corev1.TopologySpreadConstraint) bool {
				return c.TopologyKey == "topology.kubernetes.io/zone" && selectorMatches(c.LabelSelector, w.Template.Labels)
			}) {
				add("no topologySpreadConstraint across topology.kubernetes.io/zone that selects its own pods")
			}
		}
	}
	for _, j := range all[*batchv1.Job](o) {
		if j.Spec.BackoffLimit == nil || j.Spec.ActiveDeadlineSeconds == nil {
			ps = append(ps, fmt.Sprintf("Job %s: set backoffLimit and activeDeadlineSeconds so a stuck run ends", j.Name))
		}
		if rp := j.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
			ps = append(ps, fmt.Sprintf("Job %s: restartPolicy %q", j.Name, rp))
		}
	}
	return ps
}

func looksSecret(name string) bool {
	n := strings.ToUpper(name)
	for _, s := range []string{"KEY", "SECRET", "PASSWORD", "TOKEN", "PEPPER", "DATABASE_URL", "WEBHOOK"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// checkAPI checks the API Deployment against the application's configuration contract.
func checkAPI(o *overlay) []string {
	var ps []string
	add := func(format string, args ...any) {
		ps = append(ps, "Deployment wallet-api: "+fmt.Sprintf(format, args...))
	}
	deps := all[*appsv1.Deployment](o)
	if len(deps) != 1 || deps[0].Name != apiName {
		return []string{fmt.Sprintf("want exactly one Deployment, %s; got %d", apiName, len(deps))}
	}
	d := deps[0]
	spec := &d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		add("want one container, got %d", len(spec.Containers))
		return ps
	}
	c := &spec.Containers[0]
	if d.Spec.Replicas != nil {
		add("sets replicas, which fights the HorizontalPodAutoscaler on every apply")
	}
	if !strings.HasPrefix(c.Image, appImageName+":") && !strings.HasPrefix(c.Image, appImageName+"@") {
		add("image %q is not %s", c.Image, appImageName)
	}
	if !slices.Equal(c.Args, []string{"serve"}) {
		add("args %q, want [serve]", c.Args)
	}

	vals, from, _ := resolveEnv(o, c)
	if vals["REGION"] != o.Region {
		add("REGION=%q, want %q", vals["REGION"], o.Region)
	}
	for _, k := range plainEnv {
		if _, ok := vals[k]; !ok {
			add("env %s is not set", k)
		}
	}
	if vals["APP_ENV"] != "production" {
		add("APP_ENV=%q, want production", vals["APP_ENV"])
	}
	for _, k := range secretEnv {
		src := from[k]
		if src == nil || src.SecretKeyRef == nil || src.SecretKeyRef.Name != secretName {
			add("env %s must come from a secretKeyRef into Secret %s", k, secretName)
		} else if src.SecretKeyRef.Optional != nil && *src.SecretKeyRef.Optional {
			add("env %s is optional; a missing key must stop the pod", k)
		}
	}

	// Ports agree with the listen addresses the binary is given.
	if p, ok := namedPort(c.Ports, "http"); !ok || p != httpPort || addrPort(vals["HTTP_ADDR"]) != httpPort {
		add("port http must be %d and match HTTP_ADDR=%q", httpPort, vals["HTTP_ADDR"])
	}
	if p, ok := namedPort(c.Ports, "metrics"); !ok || p != metricsPort || addrPort(vals["ADMIN_ADDR"]) != metricsPort {
		add("port metrics must be %d and match ADMIN_ADDR=%q", metricsPort, vals["ADMIN_ADDR"])
	}

	probePath := func(p *corev1.Probe) string {
		if p == nil || p.HTTPGet == nil {
			return ""
		}
		return p.HTTPGet.Path
	}
	if got := probePath(c.ReadinessProbe); got != "/readyz" {
		add("readiness probe path %q, want /readyz", got)
	}
	if got := probePath(c.LivenessProbe); got != "/healthz" {
		add("liveness probe path %q, want /healthz", got)
	}
	if got := probePath(c.StartupProbe); got != "/healthz" {
		add("startup probe path %q, want /healthz", got)
	}

	// Graceful termination: the kubelet waits preStop + drain before SIGKILL.
	drain, err := time.ParseDuration(vals["SHUTDOWN_TIMEOUT"])
	if err != nil {
		add("SHUTDOWN_TIMEOUT=%q: %v", vals["SHUTDOWN_TIMEOUT"], err)
	}
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	} else {
		add("no preStop sleep: endpoints would be removed while the pod already refuses connections")
	}
	grace := 30 * time.Second // the Kubernetes default
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	if grace <= preStop+drain {
		add("terminationGracePeriodSeconds %v is not longer than preStop %v + SHUTDOWN_TIMEOUT %v", grace, preStop, drain)
	}

	// The read-only root filesystem needs a writable /tmp.
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" }) {
		add("no volume at /tmp")
	}
	return ps
}

// checkCockroach checks this region's CockroachDB nodes against the multi-cluster layout.
func checkCockroach(o *overlay, regions []string) []string {
	var ps []string
	add := func(format string, args ...any) {
		ps = append(ps, "StatefulSet cockroachdb: "+fmt.Sprintf(format, args...))
	}
	sets := all[*appsv1.StatefulSet](o)
	if len(sets) != 1 || sets[0].Name != "cockroachdb" {
		return []string{fmt.Sprintf("want exactly one StatefulSet, cockroachdb; got %d", len(sets))}
	}
	s := sets[0]
	c := &s.Spec.Template.Spec.Containers[0]
	vals, from, _ := resolveEnv(o, c)
	if vals["REGION"] != o.Region {
		add("REGION=%q, want %q", vals["REGION"], o.Region)
	}
	if z := from["ZONE"]; z == nil || z.FieldRef == nil || z.FieldRef.FieldPath != "metadata.labels['topology.kubernetes.io/zone']" {
		add("ZONE must come from the downward API label topology.kubernetes.io/zone")
	}
	args := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	if !slices.Contains(c.Args, "start") {
		add("args do not run `start`")
	}
	if args["--locality"] != "region=$(REGION),zone=$(ZONE)" {
		add("--locality=%q, want region=$(REGION),zone=$(ZONE)", args["--locality"])
	}
	if !strings.Contains(args["--advertise-host"], "$(POD_NAME).cockroachdb.$(POD_NAMESPACE)") {
		add("--advertise-host %q is not the pod's DNS name", args["--advertise-host"])
	}
	replicas := int32(1)
	if s.Spec.Replicas != nil {
		replicas = *s.Spec.Replicas
	}
	if replicas < 3 {
		add("replicas %d: a region needs three nodes to survive a zone failure", replicas)
	}
	join := strings.Split(args["--join"], ",")
	for _, r := range regions {
		for i := int32(0); i < replicas; i++ {
			want := fmt.Sprintf("%s-%d.%s.%s%s", s.Name, i, s.Spec.ServiceName, namespacePfx, r)
			if !slices.Contains(join, want) {
				add("--join lacks %s", want)
			}
		}
	}
	if s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		add("podManagementPolicy must be Parallel so a fresh cluster's nodes start together")
	}
	if !slices.ContainsFunc(s.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool {
		return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == p.Name && m.MountPath == "/cockroach/cockroach-data"
		})
	}) {
		add("no volumeClaimTemplate mounted at /cockroach/cockroach-data")
	}
	if p, ok := namedPort(c.Ports, "grpc"); !ok || p != cockroachSQL {
		add("port grpc must be %d", cockroachSQL)
	}

	var headless, public *corev1.Service
	for _, svc := range all[*corev1.Service](o) {
		switch svc.Name {
		case s.Spec.ServiceName:
			headless = svc
		case "cockroachdb-public":
			public = svc
		}
	}
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		add("the governing Service %q must be headless and publish not-ready addresses", s.Spec.ServiceName)
	}
	if public == nil || !slices.ContainsFunc(public.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == cockroachSQL }) {
		add("no cockroachdb-public Service on port %d", cockroachSQL)
	}
	return ps
}

// checkSelectors: Services, PDBs, HPAs and ServiceMonitors must point at what they mean to.
func checkSelectors(o *overlay) []string {
	var ps []string
	ws := workloads(o)
	long := slices.DeleteFunc(slices.Clone(ws), func(w workload) bool { return w.Kind == "Job" })
	for _, w := range long {
		if !selectorMatches(w.Selector, w.Template.Labels) {
			ps = append(ps, fmt.Sprintf("%s %s: selector does not match its own pod template", w.Kind, w.Name))
		}
	}
	// selected returns the long-running workloads whose pods lbls-match, and whether any Job's
	// pods match too (a Service or PDB must never pick up a migration pod).
	selected := func(match func(map[string]string) bool) (hits []workload, jobs bool) {
		for _, w := range ws {
			if match(w.Template.Labels) {
				if w.Kind == "Job" {
					jobs = true
				} else {
					hits = append(hits, w)
				}
			}
		}
		return
	}
	services := all[*corev1.Service](o)
	for _, svc := range services {
		hits, jobs := selected(func(l map[string]string) bool { return setMatches(svc.Spec.Selector, l) })
		if len(hits) != 1 {
			ps = append(ps, fmt.Sprintf("Service %s: selects no Deployment or StatefulSet (or several): %d", svc.Name, len(hits)))
			continue
		}
		if jobs {
			ps = append(ps, fmt.Sprintf("Service %s: also selects Job pods", svc.Name))
		}
		ctr := hits[0].Template.Spec.Containers
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.StrVal == "" {
				continue
			}
			if !slices.ContainsFunc(ctr, func(c corev1.Container) bool { _, ok := namedPort(c.Ports, p.TargetPort.StrVal); return ok }) {
				ps = append(ps, fmt.Sprintf("Service %s: targetPort %q is not a container port of %s", svc.Name, p.TargetPort.StrVal, hits[0].Name))
			}
		}
	}
	for _, pdb := range all[*policyv1.PodDisruptionBudget](o) {
		hits, jobs := selected(func(l map[string]string) bool { return selectorMatches(pdb.Spec.Selector, l) })
		if len(hits) != 1 || jobs {
			ps = append(ps, fmt.Sprintf("PodDisruptionBudget %s: selects no workload, several, or Job pods", pdb.Name))
		}
		if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
			ps = append(ps, fmt.Sprintf("PodDisruptionBudget %s: neither maxUnavailable nor minAvailable", pdb.Name))
		}
	}
	for _, name := range []string{apiName, "cockroachdb"} {
		if !slices.ContainsFunc(all[*policyv1.PodDisruptionBudget](o), func(p *policyv1.PodDisruptionBudget) bool {
			return slices.ContainsFunc(long, func(w workload) bool { return w.Name == name && selectorMatches(p.Spec.Selector, w.Template.Labels) })
		}) {
			ps = append(ps, fmt.Sprintf("no PodDisruptionBudget covers %s", name))
		}
	}
	for _, hpa := range all[*autoscalingv2.HorizontalPodAutoscaler](o) {
		ref := hpa.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || !slices.ContainsFunc(long, func(w workload) bool { return w.Kind == "Deployment" && w.Name == ref.Name }) {
			ps = append(ps, fmt.Sprintf("HorizontalPodAutoscaler %s: scaleTargetRef %s/%s %s is not a rendered Deployment", hpa.Name, ref.APIVersion, ref.Kind, ref.Name))
		}
		if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 3 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
			ps = append(ps, fmt.Sprintf("HorizontalPodAutoscaler %s: minReplicas must be at least 3 (one per zone) and not above maxReplicas", hpa.Name))
		}
	}
	sms := all[*monitoringv1.ServiceMonitor](o)
	if !slices.ContainsFunc(sms, func(sm *monitoringv1.ServiceMonitor) bool { return sm.Name == apiName }) {
		ps = append(ps, "no ServiceMonitor for "+apiName)
	}
	for _, sm := range sms {
		var target []*corev1.Service
		for _, svc := range services {
			if selectorMatches(&sm.Spec.Selector, svc.Labels) {
				target = append(target, svc)
			}
		}
		if len(target) != 1 {
			ps = append(ps, fmt.Sprintf("ServiceMonitor %s: selects %d Services, want 1", sm.Name, len(target)))
			continue
		}
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(target[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				ps = append(ps, fmt.Sprintf("ServiceMonitor %s: Service %s has no port named %q", sm.Name, target[0].Name, ep.Port))
			}
		}
	}
	return ps
}

// ---- NetworkPolicy evaluation ----

// peer is one end of a connection: a pod's labels in a namespace.
type peer struct {
	Namespace string
	Labels    map[string]string
}

func nsLabels(ns string) map[string]string {
	return map[string]string{"kubernetes.io/metadata.name": ns}
}

func peerMatches(p networkingv1.NetworkPolicyPeer, policyNS string, other peer) bool {
	if p.IPBlock != nil {
		return false // the peers checked here are pods, which ipBlock rules are not meant for
	}
	if p.NamespaceSelector == nil {
		if other.Namespace != policyNS {
			return false
		}
	} else if !emptyOrMatches(p.NamespaceSelector, nsLabels(other.Namespace)) {
		return false
	}
	return p.PodSelector == nil || emptyOrMatches(p.PodSelector, other.Labels)
}

func emptyOrMatches(sel *metav1.LabelSelector, lbls map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(lbls))
}

func portMatches(ports []networkingv1.NetworkPolicyPort, port int, proto corev1.Protocol) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pr := corev1.ProtocolTCP
		if p.Protocol != nil {
			pr = *p.Protocol
		}
		if pr == proto && (p.Port == nil || p.Port.IntValue() == port) {
			return true
		}
	}
	return false
}

// allowed reports whether policies in the overlay let src open port/proto on dst, from the side
// of the pod the policies are in (ingress for dst, egress for src). Pods no policy selects for a
// direction are open in that direction, as in Kubernetes.
func allowed(o *overlay, ingress bool, self, other peer, port int, proto corev1.Protocol) bool {
	selected := false
	for _, np := range all[*networkingv1.NetworkPolicy](o) {
		if np.Namespace != self.Namespace || !emptyOrMatches(&np.Spec.PodSelector, self.Labels) {
			continue
		}
		want := networkingv1.PolicyTypeEgress
		if ingress {
			want = networkingv1.PolicyTypeIngress
		}
		if !slices.Contains(np.Spec.PolicyTypes, want) {
			continue
		}
		selected = true
		if ingress {
			for _, r := range np.Spec.Ingress {
				if portMatches(r.Ports, port, proto) && (len(r.From) == 0 || slices.ContainsFunc(r.From, func(p networkingv1.NetworkPolicyPeer) bool { return peerMatches(p, np.Namespace, other) })) {
					return true
				}
			}
		} else {
			for _, r := range np.Spec.Egress {
				if portMatches(r.Ports, port, proto) && (len(r.To) == 0 || slices.ContainsFunc(r.To, func(p networkingv1.NetworkPolicyPeer) bool { return peerMatches(p, np.Namespace, other) })) {
					return true
				}
			}
		}
	}
	return !selected
}

func checkNetworkPolicies(o *overlay) []string {
	var ps []string
	ns := namespacePfx + o.Region
	if !slices.ContainsFunc(all[*networkingv1.NetworkPolicy](o), func(np *networkingv1.NetworkPolicy) bool {
		return len(np.Spec.PodSelector.MatchLabels) == 0 && len(np.Spec.PodSelector.MatchExpressions) == 0 &&
			len(np.Spec.Ingress) == 0 && len(np.Spec.Egress) == 0 &&
			slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) &&
			slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}) {
		ps = append(ps, "NetworkPolicy: no default-deny policy for the namespace")
	}
	var api, db peer
	for _, w := range workloads(o) {
		switch w.Name {
		case apiName:
			api = peer{ns, w.Template.Labels}
		case "cockroachdb":
			db = peer{ns, w.Template.Labels}
		}
	}
	ingressNginx := peer{"ingress-nginx", map[string]string{"app.kubernetes.io/name": "ingress-nginx"}}
	prometheus := peer{"monitoring", map[string]string{"app.kubernetes.io/name": "prometheus"}}
	dns := peer{"kube-system", map[string]string{"k8s-app": "kube-dns"}}
	stranger := peer{"default", map[string]string{"app": "other"}}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP

	expect := func(want bool, what string, ingress bool, self, other peer, port int, proto corev1.Protocol) {
		if allowed(o, ingress, self, other, port, proto) != want {
			verb := "must allow"
			if !want {
				verb = "must not allow"
			}
			ps = append(ps, fmt.Sprintf("NetworkPolicy: %s %s (port %d/%s)", verb, what, port, proto))
		}
	}
	expect(true, "ingress-nginx to the API", true, api, ingressNginx, httpPort, tcp)
	expect(true, "Prometheus to the API metrics", true, api, prometheus, metricsPort, tcp)
	expect(false, "ingress-nginx to the API metrics and pprof", true, api, ingressNginx, metricsPort, tcp)
	expect(false, "other namespaces to the API", true, api, stranger, httpPort, tcp)
	expect(true, "the API to CockroachDB", false, api, db, cockroachSQL, tcp)
	expect(true, "the API to DNS over UDP", false, api, dns, 53, udp)
	expect(true, "the API to DNS over TCP", false, api, dns, 53, tcp)
	expect(false, "the API to arbitrary pods", false, api, stranger, 5432, tcp)
	expect(true, "CockroachDB to accept the API", true, db, api, cockroachSQL, tcp)
	expect(false, "other namespaces to the CockroachDB console", true, db, stranger, 8080, tcp)
	for _, j := range all[*batchv1.Job](o) {
		job := peer{ns, j.Spec.Template.Labels}
		expect(true, "Job "+j.Name+" to CockroachDB", false, job, db, cockroachSQL, tcp)
	}
	return ps
}

// ---- across overlays ----

func checkAcrossOverlays(ovs []*overlay) []string {
	var ps []string
	var regions []string
	primary := ""
	for _, o := range ovs {
		cm := configMap(o)
		if cm == nil {
			continue
		}
		r, p := strings.Split(cm.Data["REGIONS"], ","), cm.Data["PRIMARY_REGION"]
		if regions != nil && (!slices.Equal(r, regions) || p != primary) {
			ps = append(ps, fmt.Sprintf("overlays/%s: REGIONS/PRIMARY_REGION differ from another overlay's", o.Region))
		}
		regions, primary = r, p
	}
	var have []string
	for _, o := range ovs {
		have = append(have, o.Region)
	}
	sort.Strings(have)
	want := slices.Sorted(slices.Values(regions))
	if !slices.Equal(have, want) {
		ps = append(ps, fmt.Sprintf("overlays %v do not match REGIONS %v", have, want))
	}

	// The once-per-cluster Jobs live in the primary region's overlay and nowhere else.
	onceOnly := map[string]func(j *batchv1.Job) bool{
		"migrate up": func(j *batchv1.Job) bool {
			c := j.Spec.Template.Spec.Containers
			return len(c) == 1 && slices.Equal(c[0].Args, []string{"migrate", "up"})
		},
		"cockroach init and database regions": func(j *batchv1.Job) bool {
			s := strings.Join(append(slices.Clone(j.Spec.Template.Spec.Containers[0].Command), j.Spec.Template.Spec.Containers[0].Args...), " ")
			return strings.Contains(s, "cockroach init") || strings.Contains(s, "$crdb init")
		},
	}
	for what, is := range onceOnly {
		var in []string
		for _, o := range ovs {
			for _, j := range all[*batchv1.Job](o) {
				if is(j) {
					in = append(in, o.Region)
				}
			}
		}
		if len(in) != 1 || in[0] != primary {
			ps = append(ps, fmt.Sprintf("the %q Job must appear once, in the primary region %s; found in %v", what, primary, in))
		}
	}
	for _, o := range ovs {
		if o.Region != primary {
			continue
		}
		for _, j := range all[*batchv1.Job](o) {
			c := j.Spec.Template.Spec.Containers[0]
			if onceOnly["migrate up"](j) && c.Image != apiContainer(o).Image {
				ps = append(ps, fmt.Sprintf("Job %s runs image %s, not the API's %s", j.Name, c.Image, apiContainer(o).Image))
			}
			if onceOnly["cockroach init and database regions"](j) {
				script := strings.Join(c.Args, "\n")
				for _, stmt := range []string{"SET PRIMARY REGION", "ADD REGION", "SURVIVE REGION FAILURE", "CREATE DATABASE IF NOT EXISTS wallet"} {
					if !strings.Contains(script, stmt) {
						ps = append(ps, fmt.Sprintf("Job %s: the init script lacks %s", j.Name, stmt))
					}
				}
			}
		}
	}
	return ps
}

// TestExampleSecretsCoverEveryReference keeps the placeholder Secret manifest in step with the
// keys the workloads read, and checks that it holds placeholders only.
func TestExampleSecretsCoverEveryReference(t *testing.T) {
	data, err := os.ReadFile("examples/secrets.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	examples := map[string]*corev1.Secret{}
	for _, doc := range splitYAML(t, data) {
		obj, err := strictDecode(doc)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := obj.Obj.(*corev1.Secret)
		if !ok {
			t.Fatalf("examples/secrets.example.yaml holds a %s; only Secrets belong there", obj.Kind)
		}
		for k, v := range s.StringData {
			// A placeholder, or a database URL that carries no password (certificate auth).
			u, err := url.Parse(v)
			passwordless := err == nil && u.Scheme == "postgresql" && u.User != nil && func() bool { _, set := u.User.Password(); return !set }()
			if !strings.Contains(v, "REPLACE") && !passwordless {
				t.Errorf("example Secret %s key %s has a value that is neither a REPLACE placeholder nor a password-less URL", s.Name, k)
			}
		}
		if len(s.Data) > 0 {
			t.Errorf("example Secret %s uses data:, which hides what it holds; use stringData placeholders", s.Name)
		}
		examples[s.Name] = s
	}
	for _, o := range overlays(t) {
		for _, w := range workloads(o) {
			for _, c := range w.Template.Spec.Containers {
				for _, e := range c.Env {
					if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						continue
					}
					ref := e.ValueFrom.SecretKeyRef
					s, ok := examples[ref.Name]
					if !ok {
						t.Errorf("overlays/%s %s %s reads Secret %s, which examples/secrets.example.yaml does not describe", o.Region, w.Kind, w.Name, ref.Name)
						continue
					}
					if _, ok := s.StringData[ref.Key]; !ok {
						t.Errorf("overlays/%s %s %s reads %s/%s, missing from the example", o.Region, w.Kind, w.Name, ref.Name, ref.Key)
					}
				}
			}
		}
	}
}

// splitYAML turns a multi-document YAML file into JSON documents using kyaml, the parser
// kustomize itself uses.
func splitYAML(t *testing.T, data []byte) [][]byte {
	t.Helper()
	nodes, err := kio.FromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, n := range nodes {
		b, err := n.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
