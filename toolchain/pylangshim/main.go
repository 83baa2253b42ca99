// Command pulumi-language-python is this project's adapter in front of the Python language host
// of github.com/pulumi/pulumi/sdk/v3 v3.79.0, built beside it as pulumi-language-python-host
// (see toolchain/versions.env for why that version).
//
// Up to sdk v3.79.0 the CLI handed a project's `runtime.options` to the language host as flags
// (`-root=<dir> -virtualenv=<path>`). Newer CLIs send only the engine address on the command line
// and pass the options inside the gRPC requests, which the 3.79.0 host does not read. Without the
// adapter the host would ignore `options.virtualenv` and run the program with whatever `python3`
// is first on PATH.
//
// The adapter finds Pulumi.yaml (or Pulumi.yml) in the directory the CLI starts the host in (the
// program directory) or one of its parents, adds the flags the old CLI used to add, and execs the
// real host. Every other argument passes through unchanged.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

// realHostName is the file name of the real host beside this adapter.
const realHostName = "pulumi-language-python-host"

// findProject walks up from dir to the first directory holding Pulumi.yaml or Pulumi.yml and
// returns that directory and the file's path ("" and "" when there is none).
func findProject(dir string) (string, string) {
	for {
		for _, name := range []string{"Pulumi.yaml", "Pulumi.yml"} {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return dir, p
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ""
		}
		dir = parent
	}
}

// runtimeOptions returns the `runtime.options` mapping of a Pulumi.yaml (nil when runtime is a
// plain string or has no options).
func runtimeOptions(data []byte) (map[string]any, error) {
	var p struct {
		Runtime yaml.Node `yaml:"runtime"`
	}
	if err := yaml.Unmarshal(data, &p); err != nil {
		return nil, err
	}
	if p.Runtime.Kind != yaml.MappingNode {
		return nil, nil
	}
	var rt struct {
		Options map[string]any `yaml:"options"`
	}
	if err := p.Runtime.Decode(&rt); err != nil {
		return nil, err
	}
	return rt.Options, nil
}

// passedFlag reports whether args already carry -name or --name (alone or with =value).
func passedFlag(args []string, name string) bool {
	for _, a := range args {
		for _, prefix := range []string{"-" + name, "--" + name} {
			if a == prefix || strings.HasPrefix(a, prefix+"=") {
				return true
			}
		}
	}
	return false
}

// hostArgs returns the real host's arguments: the old CLI's flags for the project found from cwd,
// then args. Warnings (an unreadable Pulumi.yaml, an unsupported toolchain) go to the second result.
func hostArgs(cwd string, args []string) ([]string, []string) {
	var flags, warnings []string
	root, yml := findProject(cwd)
	if yml == "" {
		return args, nil
	}
	if !passedFlag(args, "root") {
		flags = append(flags, "-root="+root)
	}
	data, err := os.ReadFile(yml)
	var opts map[string]any
	if err == nil {
		opts, err = runtimeOptions(data)
	}
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("reading %s: %v", yml, err))
	}
	if venv, ok := opts["virtualenv"].(string); ok && venv != "" && !passedFlag(args, "virtualenv") {
		flags = append(flags, "-virtualenv="+venv)
	}
	if toolchain, ok := opts["toolchain"].(string); ok && toolchain != "" && toolchain != "pip" {
		warnings = append(warnings, fmt.Sprintf(
			"runtime option toolchain=%s is not supported by this language host; using pip and the virtualenv", toolchain))
	}
	// Options that did not exist for the 3.79.0 host (typechecker, ...) are left out.
	return append(flags, args...), warnings
}

func main() {
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python adapter: %v\n", err)
		os.Exit(1)
	}
	real := filepath.Join(filepath.Dir(self), realHostName)
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python adapter: %v\n", err)
		os.Exit(1)
	}
	args, warnings := hostArgs(cwd, os.Args[1:])
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "pulumi-language-python adapter: %s\n", w)
	}
	if err := syscall.Exec(real, append([]string{real}, args...), os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python adapter: exec %s: %v\n", real, err)
		os.Exit(1)
	}
}
