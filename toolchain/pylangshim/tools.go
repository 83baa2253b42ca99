//go:build tools

// The real language host, built from this module beside the adapter (toolchain/ensure).
package main

import _ "github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python"
