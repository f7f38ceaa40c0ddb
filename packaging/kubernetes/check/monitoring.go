package main

// The Prometheus Operator's kinds the chart may render (ServiceMonitor, PrometheusRule). Their Go types live in the
// operator's own module, far larger than this checker; these structs hold the fields of the operator's CRDs
// (monitoring.coreos.com/v1) the chart uses or a user may set through it, so the strict decoder refuses any other,
// as the API server's schema validation would a misspelt one.

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []monitorEndpoint `json:"endpoints"`
	} `json:"spec"`
}

type monitorEndpoint struct {
	Port          string `json:"port,omitempty"`
	Path          string `json:"path,omitempty"`
	Scheme        string `json:"scheme,omitempty"`
	Interval      string `json:"interval,omitempty"`
	ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
	HonorLabels   bool   `json:"honorLabels,omitempty"`
	// The operator's SafeTLSConfig has many optional fields; any object is taken here.
	TLSConfig     map[string]any `json:"tlsConfig,omitempty"`
	Authorization *struct {
		Type        string                    `json:"type,omitempty"`
		Credentials *corev1.SecretKeySelector `json:"credentials,omitempty"`
	} `json:"authorization,omitempty"`
	Relabelings []struct {
		SourceLabels []string `json:"sourceLabels,omitempty"`
		Separator    *string  `json:"separator,omitempty"`
		TargetLabel  string   `json:"targetLabel,omitempty"`
		Regex        string   `json:"regex,omitempty"`
		Modulus      uint64   `json:"modulus,omitempty"`
		Replacement  *string  `json:"replacement,omitempty"`
		Action       string   `json:"action,omitempty"`
	} `json:"relabelings,omitempty"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Limit    *int   `json:"limit,omitempty"`
			Rules    []struct {
				Record        string             `json:"record,omitempty"`
				Alert         string             `json:"alert,omitempty"`
				Expr          intstr.IntOrString `json:"expr"`
				For           string             `json:"for,omitempty"`
				KeepFiringFor string             `json:"keep_firing_for,omitempty"`
				Labels        map[string]string  `json:"labels,omitempty"`
				Annotations   map[string]string  `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

func init() {
	kinds["monitoring.coreos.com/v1/ServiceMonitor"] = func() any { return &serviceMonitor{} }
	kinds["monitoring.coreos.com/v1/PrometheusRule"] = func() any { return &prometheusRule{} }
}

// checkServiceMonitor checks what the CRD's schema would, and that the monitor selects something: a Service among
// `services` (those of the same input) with its labels and a port of each endpoint's name.
func checkServiceMonitor(m *serviceMonitor, services []*corev1.Service) error {
	if len(m.Spec.Endpoints) == 0 {
		return errors.New("ServiceMonitor: no endpoint")
	}
	if len(m.Spec.Selector.MatchLabels) == 0 && len(m.Spec.Selector.MatchExpressions) == 0 {
		return errors.New("ServiceMonitor: an empty selector selects every Service of the namespace")
	}
	for _, endpoint := range m.Spec.Endpoints {
		if endpoint.Port == "" {
			return errors.New("ServiceMonitor: an endpoint without a port name")
		}
		if endpoint.Scheme != "" && endpoint.Scheme != "http" && endpoint.Scheme != "https" {
			return fmt.Errorf("ServiceMonitor: scheme %q", endpoint.Scheme)
		}
		if endpoint.Authorization != nil && endpoint.Authorization.Credentials != nil &&
			(endpoint.Authorization.Credentials.Name == "" || endpoint.Authorization.Credentials.Key == "") {
			return errors.New("ServiceMonitor: authorization credentials without a Secret name or key")
		}
		found := false
		for _, service := range services {
			if !selects(m.Spec.Selector.MatchLabels, service.Labels) {
				continue
			}
			for _, port := range service.Spec.Ports {
				found = found || port.Name == endpoint.Port
			}
		}
		if !found {
			return fmt.Errorf("ServiceMonitor: no Service of these manifests has labels %v and a port named %q",
				m.Spec.Selector.MatchLabels, endpoint.Port)
		}
	}
	return nil
}

func selects(selector, labels map[string]string) bool {
	for key, value := range selector {
		if labels[key] != value {
			return false
		}
	}
	return true
}

// checkPrometheusRule checks the groups' shape as Prometheus loads a rule file (promtool checks the expressions of
// the file the rules come from).
func checkPrometheusRule(r *prometheusRule) error {
	if len(r.Spec.Groups) == 0 {
		return errors.New("PrometheusRule: no rule group")
	}
	names := map[string]bool{}
	for _, group := range r.Spec.Groups {
		if group.Name == "" || names[group.Name] {
			return fmt.Errorf("PrometheusRule: group name %q is empty or not unique", group.Name)
		}
		names[group.Name] = true
		if len(group.Rules) == 0 {
			return fmt.Errorf("PrometheusRule: group %q has no rule", group.Name)
		}
		for i, rule := range group.Rules {
			if (rule.Alert == "") == (rule.Record == "") {
				return fmt.Errorf("PrometheusRule: group %q, rule %d: exactly one of alert and record", group.Name, i+1)
			}
			if strings.TrimSpace(rule.Expr.String()) == "" {
				return fmt.Errorf("PrometheusRule: group %q, rule %d: no expr", group.Name, i+1)
			}
			if rule.Record != "" && (rule.For != "" || len(rule.Annotations) > 0) {
				return fmt.Errorf("PrometheusRule: recording rule %q has for or annotations", rule.Record)
			}
		}
	}
	return nil
}
