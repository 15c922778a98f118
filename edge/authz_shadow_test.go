package edge

import (
	"path/filepath"
	"strings"
	"testing"
)

// A specific rule before a general one is fine (the shadow check refuses
// only the other order: TestAuthzKeysValidate).
func TestAuthzRulesInGoodOrder(t *testing.T) {
	dir := t.TempDir()
	ca, _ := edgeCert(t, dir, "edge.test")
	writeFile(t, filepath.Join(dir, "ca.pem"), string(ca.PEM))
	route := `routes: [{sni: ["*"], backend: b, mode: terminate, protocol: http, tls: {cert: DIR/edge.pem, key: DIR/edge-key.pem, client_auth: require, client_ca: DIR/ca.pem}, authorize: [{paths: ["/admin/"], allow: [{cn: admin}]}, {paths: ["/v1/"], methods: [GET]}, {paths: ["/v1/"]}, {paths: ["/"]}]}]`
	body := strings.Replace(opsBase, `routes: [{sni: ["*"], backend: b}]`, strings.ReplaceAll(route, "DIR", dir), 1)
	path := filepath.Join(dir, "edge.yaml")
	writeFile(t, path, body)
	if _, err := LoadFile(path); err != nil {
		t.Fatalf("rules from specific to general were refused: %v", err)
	}
}
