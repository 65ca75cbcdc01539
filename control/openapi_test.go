package control

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPICoversRoutes fails when a route of the router is missing from
// docs/openapi.yaml (or the spec lists a route that does not exist).
func TestOpenAPICoversRoutes(t *testing.T) {
	raw, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", spec.OpenAPI)
	}
	s, _ := startServer(t, testConfig(t, ""), newBus(t))
	inRouter := map[string]bool{}
	for _, r := range s.Routes() {
		key := strings.ToLower(r.Method) + " " + r.Pattern
		inRouter[key] = true
		if _, ok := spec.Paths[r.Pattern][strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s %s is missing from docs/openapi.yaml", r.Method, r.Pattern)
		}
	}
	for path, ops := range spec.Paths {
		if _, mounted := ops["x-mounted-by"]; mounted {
			continue // another package's routes, checked where it is mounted
		}
		for method := range ops {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			if !inRouter[method+" "+path] {
				t.Errorf("docs/openapi.yaml lists %s %s, which the router does not serve", strings.ToUpper(method), path)
			}
		}
	}
}
