package main

import (
	"path/filepath"
	"testing"
)

func TestResolve(t *testing.T) {
	// Tests run in k8s/render; resolve looks up names relative to the working directory, as
	// `make k8s` does from the repository root.
	t.Chdir(filepath.Join("..", ".."))
	for arg, want := range map[string]string{
		"me-central1":                filepath.Join("k8s", "overlays", "me-central1"),
		"k8s/overlays/us-east1":      "k8s/overlays/us-east1",
		filepath.Join("k8s", "base"): filepath.Join("k8s", "base"),
	} {
		got, err := resolve(arg)
		if err != nil || got != want {
			t.Errorf("resolve(%q) = %q, %v; want %q", arg, got, err, want)
		}
	}
	if _, err := resolve("atlantis-1"); err == nil {
		t.Error("an unknown overlay resolved")
	}
}
