package main

// The ResourceProvider gRPC service: command:remote:Command, command:remote:CopyToRemote and
// command:local:Command.
//
// Outputs are the inputs as received (secret inputs stay secret, unknowns stay unknown) plus
// stdout/stderr for the two Command types; `connection` is always returned as a secret, as
// upstream's schema marks it. Preview runs nothing. A failed command fails the RPC with a plain
// error, as upstream 1.2.1 does (no partial state).

import (
	"context"
	"fmt"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	typeRemoteCommand = "command:remote:Command"
	typeCopyToRemote  = "command:remote:CopyToRemote"
	typeLocalCommand  = "command:local:Command"
)

type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer

	mu   sync.Mutex
	host engineLogger // nil: no engine to log to

	// Cancel cancels everything running.
	root   context.Context
	cancel context.CancelFunc
}

func newProvider(host engineLogger) *commandProvider {
	p := &commandProvider{host: host}
	p.root, p.cancel = context.WithCancel(context.Background())
	return p
}

func (p *commandProvider) logger() engineLogger {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.host
}

// operation is the context for work on one resource: it ends with the RPC or with Cancel.
func (p *commandProvider) operation(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.root, cancel)
	return ctx, func() { stop(); cancel() }
}

func resourceType(typ, urn string) string {
	if typ != "" {
		return typ
	}
	return string(resource.URN(urn).Type())
}

func knownType(typ string) error {
	switch typ {
	case typeRemoteCommand, typeCopyToRemote, typeLocalCommand:
		return nil
	}
	return status.Errorf(codes.InvalidArgument,
		"unknown resource type %q: this command provider implements %s, %s and %s",
		typ, typeRemoteCommand, typeCopyToRemote, typeLocalCommand)
}

// --- plugin and provider configuration ------------------------------------------------------

func (p *commandProvider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *commandProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, AcceptResources: true, SupportsPreview: true}, nil
}

// Attach is how an engine reaches a provider started by hand (PULUMI_DEBUG_PROVIDERS).
func (p *commandProvider) Attach(_ context.Context, req *pulumirpc.PluginAttach) (*emptypb.Empty, error) {
	host, err := newHostClient(req.GetAddress())
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.host = host
	p.mu.Unlock()
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	p.cancel()
	return &emptypb.Empty{}, nil
}

// --- Check, Diff, Read ---------------------------------------------------------------------

// Check returns the new inputs unchanged, with failures for what cannot work.
func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	typ := resourceType(req.GetType(), req.GetUrn())
	if err := knownType(typ); err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews(), "news")
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: checkInputs(typ, news)}, nil
}

func failureOf(property string, err error) *pulumirpc.CheckFailure {
	return &pulumirpc.CheckFailure{Property: property, Reason: err.Error()}
}

// checkInputs finds the problems that can be seen before anything runs; unknown values are
// skipped (they are checked again when known).
func checkInputs(typ string, news resource.PropertyMap) []*pulumirpc.CheckFailure {
	var failures []*pulumirpc.CheckFailure
	if typ == typeRemoteCommand || typ == typeCopyToRemote {
		conn, ok := lookup(news, "connection")
		switch {
		case !ok:
			failures = append(failures, &pulumirpc.CheckFailure{
				Property: "connection", Reason: "missing required property 'connection'"})
		case conn.IsObject():
			for _, key := range []string{"proxy", "agentSocketPath"} {
				if v, set := lookup(conn.ObjectValue(), key); set && !v.IsComputed() {
					failures = append(failures, &pulumirpc.CheckFailure{
						Property: "connection." + key, Reason: unsupportedConnectionFields[key]})
				}
			}
		}
	}
	if typ == typeCopyToRemote {
		if _, ok := lookup(news, "remotePath"); !ok {
			failures = append(failures, &pulumirpc.CheckFailure{
				Property: "remotePath", Reason: "missing required property 'remotePath'"})
		}
		if v, ok := lookup(news, "source"); !ok || !v.IsComputed() {
			if _, err := parseSource(news); err != nil {
				failures = append(failures, failureOf("source", err))
			}
		}
	}
	if typ == typeLocalCommand {
		for _, key := range []string{"assetPaths", "archivePaths"} {
			if _, set := lookup(news, key); set {
				failures = append(failures, &pulumirpc.CheckFailure{Property: key,
					Reason: key + " (the assets/archive outputs) is not supported by this command provider"})
			}
		}
	}
	if typ == typeRemoteCommand || typ == typeLocalCommand {
		if v, ok := lookup(news, "logging"); ok && !v.IsComputed() {
			s, set, err := optString(news, "logging")
			if err == nil {
				_, err = parseLogging(s, set)
			}
			if err != nil {
				failures = append(failures, failureOf("logging", err))
			}
		}
	}
	return failures
}

// Diff compares the old inputs with the new ones; see diff.go.
func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	if err := knownType(resourceType(req.GetType(), req.GetUrn())); err != nil {
		return nil, err
	}
	var olds resource.PropertyMap
	var err error
	if req.GetOldInputs() != nil {
		olds, err = unmarshal(req.GetOldInputs(), "oldInputs")
	} else {
		olds, err = unmarshal(req.GetOlds(), "olds")
		for key := range outputOnly {
			delete(olds, key)
		}
	}
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews(), "news")
	if err != nil {
		return nil, err
	}
	applyIgnoreChanges(olds, news, req.GetIgnoreChanges())
	return diffResponse(detailedDiff(olds, news)), nil
}

func diffResponse(changes map[string]diffKind) *pulumirpc.DiffResponse {
	if len(changes) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE, HasDetailedDiff: true}
	}
	detailed := make(map[string]*pulumirpc.PropertyDiff, len(changes))
	for path, kind := range changes {
		detailed[path] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	return &pulumirpc.DiffResponse{
		Changes:         pulumirpc.DiffResponse_DIFF_SOME,
		Diffs:           changedKeys(changes),
		DetailedDiff:    detailed,
		HasDetailedDiff: true,
	}
}

// Read returns the state it is given: refresh changes nothing.
func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	if err := knownType(resourceType(req.GetType(), req.GetUrn())); err != nil {
		return nil, err
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

// --- Create, Update, Delete ------------------------------------------------------------------

// outputsOf is the inputs as outputs: connection made secret.
func outputsOf(typ string, inputs resource.PropertyMap) resource.PropertyMap {
	out := inputs.Copy()
	if typ != typeLocalCommand {
		if v, ok := out["connection"]; ok && !v.IsNull() && !v.IsSecret() {
			out["connection"] = resource.MakeSecret(v)
		}
	}
	return out
}

func setOutputText(out resource.PropertyMap, stdout, stderr string, secret bool) {
	wrap := func(s string) resource.PropertyValue {
		v := resource.NewStringProperty(s)
		if secret {
			return resource.MakeSecret(v)
		}
		return v
	}
	out["stdout"], out["stderr"] = wrap(stdout), wrap(stderr)
}

func setOutputUnknown(out resource.PropertyMap) {
	out["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
	out["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
}

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	typ := resourceType(req.GetType(), req.GetUrn())
	if err := knownType(typ); err != nil {
		return nil, err
	}
	inputs, err := unmarshal(req.GetProperties(), "properties")
	if err != nil {
		return nil, err
	}
	ctx, done := p.operation(ctx)
	defer done()
	rep := reporter{ctx: ctx, host: p.logger(), urn: resource.URN(req.GetUrn())}
	out := outputsOf(typ, inputs)
	preview := req.GetPreview()
	var id string

	switch {
	case typ == typeCopyToRemote:
		if !preview {
			if err := p.copy(ctx, inputs, rep); err != nil {
				return nil, err
			}
			if id, err = resource.NewUniqueHex("", 8, 0); err != nil {
				return nil, err
			}
		}
	case preview:
		setOutputUnknown(out)
	default:
		command, set := lookup(inputs, "create")
		stdout, stderr, secret := "", "", false
		if set {
			secret = isSecret(inputs, "create")
			if stdout, stderr, err = p.run(ctx, typ, inputs, command, secret, nil, rep); err != nil {
				return nil, err
			}
		}
		setOutputText(out, stdout, stderr, secret)
		if id, err = resource.NewUniqueHex(resource.URN(req.GetUrn()).Name(), 8, 0); err != nil {
			return nil, err
		}
	}
	props, err := marshal(out, "outputs")
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	typ := resourceType(req.GetType(), req.GetUrn())
	if err := knownType(typ); err != nil {
		return nil, err
	}
	olds, err := unmarshal(req.GetOlds(), "olds")
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews(), "news")
	if err != nil {
		return nil, err
	}
	ctx, done := p.operation(ctx)
	defer done()
	rep := reporter{ctx: ctx, host: p.logger(), urn: resource.URN(req.GetUrn())}
	out := outputsOf(typ, news)
	preview := req.GetPreview()

	switch {
	case typ == typeCopyToRemote:
		if !preview && needsCopy(olds, news) {
			if err := p.copy(ctx, news, rep); err != nil {
				return nil, err
			}
		}
	case preview:
		setOutputUnknown(out)
	default:
		key := "update"
		command, set := lookup(news, key)
		if !set {
			key = "create"
			command, set = lookup(news, key)
		}
		if !set {
			// Nothing to run: the previous outputs stay, as stored.
			for _, k := range []resource.PropertyKey{"stdout", "stderr"} {
				if v, ok := olds[k]; ok {
					out[k] = v
				} else {
					out[k] = resource.NewStringProperty("")
				}
			}
			break
		}
		secret := isSecret(news, key)
		stdout, stderr, err := p.run(ctx, typ, news, command, secret, olds, rep)
		if err != nil {
			return nil, err
		}
		setOutputText(out, stdout, stderr, secret)
	}
	props, err := marshal(out, "outputs")
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

// Delete runs `delete` with the stored state (its connection, its outputs); CopyToRemote
// leaves the remote files in place.
func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	typ := resourceType(req.GetType(), req.GetUrn())
	if err := knownType(typ); err != nil {
		return nil, err
	}
	if typ == typeCopyToRemote {
		return &emptypb.Empty{}, nil
	}
	state, err := unmarshal(req.GetProperties(), "properties")
	if err != nil {
		return nil, err
	}
	command, set := lookup(state, "delete")
	if !set {
		return &emptypb.Empty{}, nil
	}
	ctx, done := p.operation(ctx)
	defer done()
	rep := reporter{ctx: ctx, host: p.logger(), urn: resource.URN(req.GetUrn())}
	if _, _, err := p.run(ctx, typ, state, command, isSecret(state, "delete"), state, rep); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// run runs one command of a Command resource; previous holds the stored outputs (nil on create).
func (p *commandProvider) run(ctx context.Context, typ string, inputs resource.PropertyMap,
	command resource.PropertyValue, secret bool, previous resource.PropertyMap, rep reporter,
) (string, string, error) {
	if !command.IsString() {
		if command.IsComputed() {
			return "", "", fmt.Errorf("the command is not known yet")
		}
		return "", "", fmt.Errorf("the command must be a string, got %s", command.TypeString())
	}
	spec := &runSpec{command: command.StringValue(), secret: secret}
	var err error
	if spec.env, err = optStringMap(inputs, "environment"); err != nil {
		return "", "", err
	}
	if spec.addPrevious, err = optBool(inputs, "addPreviousOutputInEnv", true); err != nil {
		return "", "", err
	}
	if previous != nil {
		spec.prevStdout, _, _ = optString(previous, "stdout")
		spec.prevStderr, _, _ = optString(previous, "stderr")
	}
	if spec.stdin, _, err = optString(inputs, "stdin"); err != nil {
		return "", "", err
	}
	mode, set, err := optString(inputs, "logging")
	if err != nil {
		return "", "", err
	}
	if spec.logging, err = parseLogging(mode, set); err != nil {
		return "", "", err
	}
	if typ == typeLocalCommand {
		interpreter, err := optStringList(inputs, "interpreter")
		if err != nil {
			return "", "", err
		}
		dir, _, err := optString(inputs, "dir")
		if err != nil {
			return "", "", err
		}
		return runLocal(ctx, spec, interpreter, dir, rep)
	}
	conn, err := parseConnection(inputs)
	if err != nil {
		return "", "", err
	}
	return runRemote(ctx, conn, spec, rep)
}

func (p *commandProvider) copy(ctx context.Context, inputs resource.PropertyMap, rep reporter) error {
	conn, err := parseConnection(inputs)
	if err != nil {
		return err
	}
	src, err := parseSource(inputs)
	if err != nil {
		return err
	}
	remotePath, ok, err := optString(inputs, "remotePath")
	if err != nil {
		return err
	}
	if !ok || remotePath == "" {
		return fmt.Errorf("missing required property 'remotePath'")
	}
	return copyToRemote(ctx, conn, src, remotePath, rep)
}
