// Command pulumi-language-python is a small shim in front of the real Python language host
// (pulumi-language-python-host-<version>, built from github.com/pulumi/pulumi/sdk/v3 at
// PULUMI_LANGUAGE_PYTHON_SDK_VERSION, see toolchain/versions.env).
//
// Why it exists: up to sdk v3.79.0 the CLI handed a project's `runtime.options` to the language
// host as command-line flags (`-root=<dir> -virtualenv=<path>`). Newer CLIs only send the engine
// address on the command line and pass the options inside the gRPC requests, which the 3.79.0
// host does not read. Without this shim the host would ignore `options.virtualenv` from
// Pulumi.yaml and run the program with whatever `python3` is first on PATH.
//
// The shim finds Pulumi.yaml (or Pulumi.yml) in the working directory the CLI starts the host in
// (the program directory) or one of its parents, and adds the flags the old CLI used to add. All
// other arguments are passed through unchanged.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"gopkg.in/yaml.v3"
)

// realHostName is overridden at build time with -ldflags "-X main.realHostName=...".
var realHostName = "pulumi-language-python-host"

type project struct {
	Runtime yaml.Node `yaml:"runtime"`
}

// findProject walks up from dir to the first directory holding Pulumi.yaml or Pulumi.yml.
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
func runtimeOptions(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p project
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

func main() {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python shim: %v\n", err)
		os.Exit(1)
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	real := filepath.Join(filepath.Dir(self), realHostName)

	args := []string{real}
	// Only add flags when the caller has not passed them itself (an old-style CLI would).
	passed := map[string]bool{}
	for _, a := range os.Args[1:] {
		for _, f := range []string{"root", "virtualenv"} {
			if a == "-"+f || a == "--"+f || len(a) > len(f)+2 && (a[:len(f)+2] == "-"+f+"=" || a[:len(f)+3] == "--"+f+"=") {
				passed[f] = true
			}
		}
	}
	if cwd, err := os.Getwd(); err == nil {
		if root, yml := findProject(cwd); yml != "" {
			if !passed["root"] {
				args = append(args, "-root="+root)
			}
			opts, err := runtimeOptions(yml)
			if err != nil {
				fmt.Fprintf(os.Stderr, "pulumi-language-python shim: reading %s: %v\n", yml, err)
			}
			for k, v := range opts {
				switch k {
				case "virtualenv":
					if s, ok := v.(string); ok && s != "" && !passed["virtualenv"] {
						args = append(args, "-virtualenv="+s)
					}
				case "toolchain":
					if s, _ := v.(string); s != "" && s != "pip" {
						fmt.Fprintf(os.Stderr, "pulumi-language-python shim: runtime option toolchain=%v "+
							"is not supported by this language host; using pip/virtualenv\n", v)
					}
				default:
					// Other options (typechecker, ...) did not exist for the old host; ignore them.
				}
			}
		}
	}
	args = append(args, os.Args[1:]...)
	if err := syscall.Exec(real, args, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python shim: exec %s: %v\n", real, err)
		os.Exit(1)
	}
}
