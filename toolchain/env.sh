# shellcheck shell=bash
# toolchain/env.sh - set up this shell for the offline Pulumi toolchain. Use with bash:
#
#     source toolchain/env.sh
#
# It takes no arguments (a sourced file sees its caller's "$@"). To make a missing command
# provider an error, export SIDEKIQ_FLEET_REQUIRE_COMMAND_PROVIDER=1 first.
#
# It runs toolchain/ensure (which builds the toolchain on first use; see its --help) and sets:
#   PATH                 the ensured bin dir first
#   PULUMI_HOME          ${SIDEKIQ_FLEET_PULUMI_HOME:-<cache root>/pulumi-home} (plugins, workspace
#                        settings; outside the clone, shared by clones on this machine)
#   PULUMI_BACKEND_URL   ${SIDEKIQ_FLEET_BACKEND_URL:-file://<project>/.state/pulumi-backend}
#                        (.state/ is the project's git-ignored state dir)
#   PULUMI_SKIP_UPDATE_CHECK=true, PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true (nothing can
#                        be downloaded here; a missing plugin fails fast instead of hanging)
#   PULUMI_CONFIG_PASSPHRASE  only if neither it nor PULUMI_CONFIG_PASSPHRASE_FILE is already set:
#                        the fixed value "sidekiq-fleet-local-only". That passphrase is PUBLIC (it
#                        is in this file): it only keeps the passphrase secrets provider working for
#                        local, throw-away stacks. Set your own before sourcing for anything real.
#   SIDEKIQ_FLEET_TOOLCHAIN_BIN  the bin dir.
# and registers pulumi-resource-command (if available) as the resource plugin
# command v$PULUMI_COMMAND_VERSION in $PULUMI_HOME/plugins.
#
# Returns non-zero (without exiting the shell) if the toolchain cannot be ensured.

_sidekiq_fleet_env() {
	local here root out bin cache ver src dest plugdir
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || return 1
	root=$(dirname "$here")
	ver=$(sed -n 's/^PULUMI_COMMAND_VERSION=//p' "$here/versions.env")

	out=$("$here/ensure") || {
		echo "toolchain/env.sh: toolchain/ensure failed; environment not changed" >&2
		return 1
	}
	bin=${out##*$'\n'}
	[[ -d $bin ]] || {
		echo "toolchain/env.sh: toolchain/ensure printed '$bin', not a directory" >&2
		return 1
	}
	cache=$("$here/ensure" --print-cache-root) || return 1

	case ":$PATH:" in
	":$bin:"*) ;;
	*) PATH="$bin:$PATH" ;;
	esac
	export PATH
	export SIDEKIQ_FLEET_TOOLCHAIN_BIN=$bin
	export PULUMI_HOME=${SIDEKIQ_FLEET_PULUMI_HOME:-$cache/pulumi-home}
	export PULUMI_BACKEND_URL=${SIDEKIQ_FLEET_BACKEND_URL:-file://$root/.state/pulumi-backend}
	export PULUMI_SKIP_UPDATE_CHECK=true
	export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
	if [[ -z ${PULUMI_CONFIG_PASSPHRASE+set} && -z ${PULUMI_CONFIG_PASSPHRASE_FILE:-} ]]; then
		# Local-only, public value; see the header of this file.
		export PULUMI_CONFIG_PASSPHRASE=sidekiq-fleet-local-only
	fi
	mkdir -p "$PULUMI_HOME"
	if [[ $PULUMI_BACKEND_URL == file://* ]]; then
		mkdir -p "${PULUMI_BACKEND_URL#file://}"
	fi

	# Register the command provider as an installed plugin (the Python SDK asks for it by version,
	# from pulumi_command's pulumi-plugin.json).
	src=$bin/pulumi-resource-command
	if [[ ! -x $src ]]; then
		# The Go module proxy refuses the real provider (versions.env): use the project's Python
		# stand-in for the same resources, found on PATH (command_provider/README.md).
		case ":$PATH:" in
		*":$root/command_provider:"*) ;;
		*) PATH="$root/command_provider:$PATH" ;;
		esac
		export PATH SIDEKIQ_FLEET_COMMAND_PROVIDER=stand-in
		echo "toolchain/env.sh: using the stand-in command provider, command_provider/" >&2
	else
		plugdir=$PULUMI_HOME/plugins/resource-command-v$ver
		dest=$plugdir/pulumi-resource-command
		if [[ ! -x $dest || -e $plugdir.partial ]] || ! cmp -s "$src" "$dest"; then
			if ! pulumi plugin install resource command "$ver" --file "$src" >/dev/null 2>&1; then
				# Fallback: the plugin cache layout the CLI reads (a dir per plugin, no .partial file).
				if ! { mkdir -p "$plugdir" && cp "$src" "$dest.tmp.$$" && chmod 0755 "$dest.tmp.$$" &&
					mv -f "$dest.tmp.$$" "$dest" && rm -f "$plugdir.partial"; }; then
					echo "toolchain/env.sh: could not register $src as plugin command v$ver" >&2
					return 1
				fi
			fi
		fi
	fi
	return 0
}
if _sidekiq_fleet_env; then
	unset -f _sidekiq_fleet_env
else
	unset -f _sidekiq_fleet_env
	# shellcheck disable=SC2317 # `return` when sourced, `exit` if run as a script by mistake
	return 1 2>/dev/null || exit 1
fi
