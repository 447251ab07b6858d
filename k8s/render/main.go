// Command render prints one region's Kubernetes manifests, exactly as `kustomize build` would,
// using the same kustomize library version the k8s tests check against (no kustomize CLI needed):
//
//	go run ./k8s/render me-central1 | kubectl apply -f -     (or: make k8s OVERLAY=me-central1)
//
// The argument is an overlay name under k8s/overlays or a path to any kustomization directory.
// It only renders; it never talks to a cluster.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: render OVERLAY   (a name under k8s/overlays, or a kustomization directory)")
		os.Exit(2)
	}
	dir, err := resolve(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(2)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	out, err := m.AsYaml()
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(out); err != nil {
		os.Exit(1)
	}
}

// resolve accepts a directory, or an overlay name looked up from the repository root or from k8s/.
func resolve(arg string) (string, error) {
	for _, dir := range []string{arg, filepath.Join("k8s", "overlays", arg), filepath.Join("overlays", arg)} {
		if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%s: no kustomization.yaml there, nor under k8s/overlays/%s", arg, arg)
}
