// pulumi-resource-command: this project's OWN implementation of the part of Pulumi's command
// provider (pulumi-command 1.2.1) that the sidekiq-fleet program uses. It is not Pulumi's
// code; see docs/command-provider.md.
//
// The engine starts it with its own gRPC address as the last argument; it listens on a free
// loopback port, prints that port on stdout and serves until the engine stops it.
package main

import (
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// version is what GetPluginInfo reports: the version the pulumi_command SDK (1.2.1) asks for.
const version = "1.2.1"

func main() {
	err := provider.Main("command", func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		if host == nil { // attach mode: the engine sends its address with Attach
			return newProvider(nil), nil
		}
		return newProvider(host), nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: %v\n", err)
		os.Exit(1)
	}
}

func newHostClient(addr string) (engineLogger, error) {
	return provider.NewHostClient(addr)
}
