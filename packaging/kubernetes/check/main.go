// Command k8s-check decodes Kubernetes manifests strictly into the API's own Go types (k8s.io/api): a field the API
// does not have, a duplicated field or a value of the wrong type (a misspelt key, a line indented one level off) is
// an error, as the API server's strict field validation would report it. It then checks what decoding cannot see:
// every volume a container mounts is declared, every probe's named port is one its container declares, and
// container names are unique in their pod. The Prometheus Operator's ServiceMonitor and PrometheusRule are decoded
// strictly into structs of their CRDs' fields (monitoring.go); a ServiceMonitor must select a Service of the input by
// its labels and port name.
//
//	k8s-check FILE...               every document of every FILE ("-": standard input)
//	k8s-check -patch PATCH FILE...  also PATCH, a strategic merge patch of a StatefulSet (what `kubectl patch
//	                                --patch-file` sends), merged into each StatefulSet of FILE as kubectl does, and
//	                                the merged StatefulSet checked
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The kinds a Daedalus manifest or chart may hold, by apiVersion and kind.
var kinds = map[string]func() any{
	"v1/Service":                    func() any { return &corev1.Service{} },
	"v1/Secret":                     func() any { return &corev1.Secret{} },
	"v1/ConfigMap":                  func() any { return &corev1.ConfigMap{} },
	"v1/ServiceAccount":             func() any { return &corev1.ServiceAccount{} },
	"apps/v1/StatefulSet":           func() any { return &appsv1.StatefulSet{} },
	"apps/v1/Deployment":            func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":                  func() any { return &batchv1.Job{} },
	"batch/v1/CronJob":              func() any { return &batchv1.CronJob{} },
	"policy/v1/PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
}

func main() {
	patchFile := flag.String("patch", "", "a strategic merge patch of the StatefulSets in FILE")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: k8s-check [-patch PATCH] FILE...")
		os.Exit(2)
	}
	var patch []byte
	if *patchFile != "" {
		var err error
		if patch, err = readPatch(*patchFile); err != nil {
			fail(err)
		}
	}
	checked := 0
	// ServiceMonitors are checked last, against the Services of all the files.
	var services []*corev1.Service
	var monitors []*serviceMonitor
	var monitorNames []string
	for _, file := range flag.Args() {
		documents, err := readDocuments(file)
		if err != nil {
			fail(err)
		}
		for i, document := range documents {
			name := fmt.Sprintf("%s, document %d", file, i+1)
			object, err := decode(document)
			if err != nil {
				fail(fmt.Errorf("%s: %w", name, err))
			}
			if err := checkObject(object); err != nil {
				fail(fmt.Errorf("%s: %w", name, err))
			}
			fmt.Printf("%s: %s\n", name, describe(object))
			checked++
			switch o := object.(type) {
			case *corev1.Service:
				services = append(services, o)
			case *serviceMonitor:
				monitors = append(monitors, o)
				monitorNames = append(monitorNames, name)
			}
			if set, ok := object.(*appsv1.StatefulSet); ok && patch != nil {
				merged, err := applyPatch(set, patch)
				if err != nil {
					fail(fmt.Errorf("%s patched by %s: %w", name, *patchFile, err))
				}
				if err := checkObject(merged); err != nil {
					fail(fmt.Errorf("%s patched by %s: %w", name, *patchFile, err))
				}
				fmt.Printf("%s patched by %s: %s\n", name, *patchFile, describe(merged))
			}
		}
	}
	if checked == 0 {
		fail(errors.New("no Kubernetes object in the files given"))
	}
	for i, monitor := range monitors {
		if err := checkServiceMonitor(monitor, services); err != nil {
			fail(fmt.Errorf("%s: %w", monitorNames[i], err))
		}
	}
}

// strictUnmarshal decodes YAML as the API server decodes a request with strict field validation: field names match
// case and all, and an unknown or duplicated field is an error.
func strictUnmarshal(document []byte, object any) error {
	json, err := yaml.YAMLToJSONStrict(document)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(json, object, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "k8s-check: %v\n", err)
	os.Exit(1)
}

func readDocuments(file string) ([][]byte, error) {
	var input io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		input = f
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(input))
	var documents [][]byte
	for {
		document, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return documents, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		// Comment-only documents (a template that rendered nothing) hold no object.
		if json, err := yaml.YAMLToJSON(document); err == nil && !bytes.Equal(bytes.TrimSpace(json), []byte("null")) {
			documents = append(documents, document)
		}
	}
}

// decode strictly decodes one document into the type its apiVersion and kind name.
func decode(document []byte) (any, error) {
	var header struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(document, &header); err != nil {
		return nil, err
	}
	newObject, ok := kinds[header.APIVersion+"/"+header.Kind]
	if !ok {
		return nil, fmt.Errorf("apiVersion %q, kind %q: not a kind this checker knows", header.APIVersion, header.Kind)
	}
	object := newObject()
	if err := strictUnmarshal(document, object); err != nil {
		return nil, fmt.Errorf("%s %s: %w", header.APIVersion, header.Kind, err)
	}
	return object, nil
}

// readPatch strictly decodes the patch as a (partial) StatefulSet, and returns it as JSON for the merge.
func readPatch(file string) ([]byte, error) {
	document, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if err := strictUnmarshal(document, &appsv1.StatefulSet{}); err != nil {
		return nil, fmt.Errorf("%s, as a StatefulSet patch: %w", file, err)
	}
	return yaml.YAMLToJSON(document)
}

// applyPatch merges the patch into the StatefulSet as `kubectl patch` does (strategic merge: lists such as
// containers and volumes merge by name).
func applyPatch(set *appsv1.StatefulSet, patch []byte) (*appsv1.StatefulSet, error) {
	original, err := yaml.Marshal(set)
	if err != nil {
		return nil, err
	}
	originalJSON, err := yaml.YAMLToJSON(original)
	if err != nil {
		return nil, err
	}
	mergedJSON, err := strategicpatch.StrategicMergePatch(originalJSON, patch, appsv1.StatefulSet{})
	if err != nil {
		return nil, err
	}
	merged := &appsv1.StatefulSet{}
	if err := strictUnmarshal(mergedJSON, merged); err != nil {
		return nil, err
	}
	return merged, nil
}

func describe(object any) string {
	switch o := object.(type) {
	case *appsv1.StatefulSet:
		return fmt.Sprintf("StatefulSet %s: %d init containers, %d containers, %d volumes, %d claim templates",
			o.Name, len(o.Spec.Template.Spec.InitContainers), len(o.Spec.Template.Spec.Containers),
			len(o.Spec.Template.Spec.Volumes), len(o.Spec.VolumeClaimTemplates))
	case *corev1.Service:
		return fmt.Sprintf("Service %s: %d ports", o.Name, len(o.Spec.Ports))
	case *serviceMonitor:
		return fmt.Sprintf("ServiceMonitor %s: %d endpoints", o.Name, len(o.Spec.Endpoints))
	case *prometheusRule:
		rules := 0
		for _, group := range o.Spec.Groups {
			rules += len(group.Rules)
		}
		return fmt.Sprintf("PrometheusRule %s: %d groups, %d rules", o.Name, len(o.Spec.Groups), rules)
	default:
		return fmt.Sprintf("%T", object)
	}
}

// checkObject checks the pod template of the objects that have one.
func checkObject(object any) error {
	switch o := object.(type) {
	case *appsv1.StatefulSet:
		claims := map[string]bool{}
		for _, claim := range o.Spec.VolumeClaimTemplates {
			claims[claim.Name] = true
		}
		return checkPod(&o.Spec.Template.Spec, claims)
	case *appsv1.Deployment:
		return checkPod(&o.Spec.Template.Spec, nil)
	case *batchv1.Job:
		return checkPod(&o.Spec.Template.Spec, nil)
	case *batchv1.CronJob:
		return checkPod(&o.Spec.JobTemplate.Spec.Template.Spec, nil)
	case *prometheusRule:
		return checkPrometheusRule(o)
	}
	return nil
}

func checkPod(pod *corev1.PodSpec, claims map[string]bool) error {
	volumes := map[string]bool{}
	for name := range claims {
		volumes[name] = true
	}
	for _, volume := range pod.Volumes {
		if volumes[volume.Name] {
			return fmt.Errorf("volume %q is declared twice", volume.Name)
		}
		volumes[volume.Name] = true
	}
	if len(pod.Containers) == 0 {
		return errors.New("the pod has no container")
	}
	names := map[string]bool{}
	all := append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...)
	for _, container := range all {
		if container.Name == "" || names[container.Name] {
			return fmt.Errorf("container name %q is empty or not unique", container.Name)
		}
		names[container.Name] = true
		if container.Image == "" {
			return fmt.Errorf("container %q has no image", container.Name)
		}
		for _, mount := range container.VolumeMounts {
			if !volumes[mount.Name] {
				return fmt.Errorf("container %q mounts volume %q, which the pod does not declare", container.Name, mount.Name)
			}
		}
		ports := map[string]bool{}
		for _, port := range container.Ports {
			ports[port.Name] = true
		}
		for what, probe := range map[string]*corev1.Probe{
			"liveness": container.LivenessProbe, "readiness": container.ReadinessProbe, "startup": container.StartupProbe,
		} {
			if probe == nil {
				continue
			}
			var port *string
			if probe.HTTPGet != nil && probe.HTTPGet.Port.StrVal != "" {
				port = &probe.HTTPGet.Port.StrVal
			}
			if probe.TCPSocket != nil && probe.TCPSocket.Port.StrVal != "" {
				port = &probe.TCPSocket.Port.StrVal
			}
			if port != nil && !ports[*port] {
				return fmt.Errorf("container %q: its %s probe names port %q, which it does not declare", container.Name, what, *port)
			}
		}
	}
	return nil
}
