# Shared setup for bin/test and bin/demo: system packages and the project virtualenv.
# Sourced, not run. Everything here is idempotent and cheap when already done.

PROJECT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SIDEKIQ_FLEET_CACHE=${SIDEKIQ_FLEET_CACHE:-/var/cache/sidekiq-fleet}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Debian packages the tests and the demo call directly: visudo and systemd-analyze
# check rendered files; the host harness needs debootstrap and systemd-nspawn.
ensure_packages() {
  local missing=()
  command -v visudo >/dev/null || missing+=(sudo)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
  command -v ssh >/dev/null || missing+=(openssh-client)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# The virtualenv is rebuilt when the pinned requirements change.
ensure_venv() {
  local venv="$PROJECT_DIR/.venv"
  local stamp="$venv/.requirements.sha256"
  local wanted
  wanted=$(cat "$PROJECT_DIR"/requirements*.txt | sha256sum | cut -d' ' -f1)
  if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    log "creating the virtualenv in .venv (pinned requirements)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$PROJECT_DIR/requirements-dev.txt"
    echo "$wanted" >"$stamp"
  fi
  # The project itself, editable, for its console script (`sidekiq-fleet`); redone when
  # pyproject.toml changes. No build isolation: the venv's setuptools builds it, offline.
  local project_stamp="$venv/.project.sha256"
  wanted=$(sha256sum <"$PROJECT_DIR/pyproject.toml" | cut -d' ' -f1)
  if [[ ! -x "$venv/bin/sidekiq-fleet" || "$(cat "$project_stamp" 2>/dev/null)" != "$wanted" ]]; then
    log "installing the project into .venv (pip install -e .)"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$PROJECT_DIR"
    echo "$wanted" >"$project_stamp"
  fi
}
