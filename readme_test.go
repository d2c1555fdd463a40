package session_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goBlock finds README's Go code blocks.
var goBlock = regexp.MustCompile("(?s)\n```go\n(.*?)\n```")

// Every Go block in README.md is a whole program that builds as written
// against this module, so a reader can paste it and run it.
func TestREADMECodeBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("long: builds each README program")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	gosum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goBlock.FindAllSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no Go block")
	}
	dir := t.TempDir()
	// One module, one package per block: the module's requirements are
	// this one's, so nothing is downloaded.
	require := strings.SplitN(string(gomod), "\n", 2)[1]
	mod := "module readme\n" + require + "\nrequire github.com/sessionkit/session v0.0.0\nreplace github.com/sessionkit/session => " + repo + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), gosum, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, b := range blocks {
		src := string(b[1])
		if !strings.HasPrefix(src, "package ") {
			t.Errorf("README Go block %d is not a whole program (it starts %q)", i+1, strings.SplitN(src, "\n", 2)[0])
			continue
		}
		pkg := filepath.Join(dir, fmt.Sprintf("block%d", i+1))
		if err := os.MkdirAll(pkg, 0o755); err != nil {
			t.Fatal(err)
		}
		name := "main.go"
		if pkgName := strings.Fields(src)[1]; strings.HasSuffix(pkgName, "_test") {
			name = "main_test.go" // a test file, as a reader would save it
		}
		if err := os.WriteFile(filepath.Join(pkg, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(gobin, "vet", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("README's Go blocks do not build: %v\n%s", err, out)
	}
}
