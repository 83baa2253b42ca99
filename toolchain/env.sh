# shellcheck shell=bash
# toolchain/env.sh - set up this shell for the Pulumi toolchain. Use with bash:
#
#     source toolchain/env.sh
#
# It runs toolchain/ensure (which builds the toolchain on first use and registers the command
# provider in Pulumi's plugin cache; see its --help) and sets:
#   PATH                 the ensured bin dir first
#   PULUMI_BACKEND_URL   ${SIDEKIQ_FLEET_BACKEND_URL:-file://<project>/.state/pulumi-backend}
#                        (.state/ is the project's git-ignored state dir)
#   PULUMI_SKIP_UPDATE_CHECK=true, PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true (nothing can
#                        be downloaded here; a missing plugin fails fast instead of hanging)
#   PULUMI_CONFIG_PASSPHRASE  only if neither it nor PULUMI_CONFIG_PASSPHRASE_FILE is already set:
#                        the fixed value "sidekiq-fleet-local-only". That passphrase is PUBLIC (it
#                        is in this file): it only keeps the passphrase secrets provider working for
#                        local, throw-away stacks. Set your own before sourcing for anything real.
#   SIDEKIQ_FLEET_TOOLCHAIN_BIN  the bin dir.
# PULUMI_HOME is left as it is (Pulumi's default is ~/.pulumi), so an official install's plugins
# are found and the command provider is registered where `pulumi plugin install` puts it.
#
# Returns non-zero (without exiting the shell) if the toolchain cannot be ensured.

_sidekiq_fleet_env() {
	local here root out bin
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || return 1
	root=$(dirname "$here")
	out=$("$here/ensure") || {
		echo "toolchain/env.sh: toolchain/ensure failed; environment not changed" >&2
		return 1
	}
	bin=${out##*$'\n'}
	case ":$PATH:" in
	":$bin:"*) ;;
	*) PATH="$bin:$PATH" ;;
	esac
	export PATH
	export SIDEKIQ_FLEET_TOOLCHAIN_BIN=$bin
	export PULUMI_BACKEND_URL=${SIDEKIQ_FLEET_BACKEND_URL:-file://$root/.state/pulumi-backend}
	export PULUMI_SKIP_UPDATE_CHECK=true
	export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
	if [[ -z ${PULUMI_CONFIG_PASSPHRASE+set} && -z ${PULUMI_CONFIG_PASSPHRASE_FILE:-} ]]; then
		# Local-only, public value; see the header of this file.
		export PULUMI_CONFIG_PASSPHRASE=sidekiq-fleet-local-only
	fi
	if [[ $PULUMI_BACKEND_URL == file://* ]]; then
		mkdir -p "${PULUMI_BACKEND_URL#file://}"
	fi
}
if _sidekiq_fleet_env; then
	unset -f _sidekiq_fleet_env
else
	unset -f _sidekiq_fleet_env
	# shellcheck disable=SC2317 # `return` when sourced, `exit` if run as a script by mistake
	return 1 2>/dev/null || exit 1
fi
