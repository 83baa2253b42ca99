# shellcheck shell=bash
# toolchain/env.sh - set up this shell for the Pulumi toolchain. Use with bash:
#
#     source toolchain/env.sh
#
# It runs toolchain/ensure (which builds the toolchain on first use and registers the command
# provider in a plugin cache; see its --help) and sets:
#   PATH                 the toolchain's directories first (none when everything is installed)
#   PULUMI_HOME          only when ensure chose the project's own plugin home (PULUMI_HOME unset and
#                        no upstream command plugin in ~/.pulumi): <cache>/pulumi-home
#   PULUMI_BACKEND_URL   ${SIDEKIQ_FLEET_BACKEND_URL:-file://<project>/.state/pulumi-backend}
#                        (.state/ is the project's git-ignored state dir)
#   PULUMI_SKIP_UPDATE_CHECK=true, PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true (nothing can
#                        be downloaded here; a missing plugin fails fast instead of hanging)
#   PULUMI_CONFIG_PASSPHRASE  only if neither it nor PULUMI_CONFIG_PASSPHRASE_FILE is already set:
#                        the fixed value "sidekiq-fleet-local-only". That passphrase is PUBLIC (it
#                        is in this file): it only keeps the passphrase secrets provider working for
#                        local, throw-away stacks. Set your own before sourcing for anything real.
#   SIDEKIQ_FLEET_TOOLCHAIN_PATH  the directories put on PATH.
#
# Returns non-zero (without exiting the shell) if the toolchain cannot be ensured.

_sidekiq_fleet_env() {
	local here root out line dirs="" home=""
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || return 1
	root=$(dirname "$here")
	out=$("$here/ensure") || {
		echo "toolchain/env.sh: toolchain/ensure failed; environment not changed" >&2
		return 1
	}
	while IFS= read -r line; do
		case $line in
		SIDEKIQ_FLEET_TOOLCHAIN_PATH=*) dirs=${line#*=} ;;
		PULUMI_HOME=*) home=${line#*=} ;;
		esac
	done <<<"$out"
	if [[ -n $dirs && ":$PATH:" != ":$dirs:"* ]]; then
		PATH="$dirs:$PATH"
	fi
	export PATH
	export SIDEKIQ_FLEET_TOOLCHAIN_PATH=$dirs
	if [[ -n $home ]]; then
		export PULUMI_HOME=$home
	fi
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
