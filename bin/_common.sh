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
  # tests/test_capistrano.py and tests/e2e/test_capistrano_rake.py run Debian's Capistrano; its
  # net-ssh needs the two gems for ed25519 keys.
  command -v cap >/dev/null || missing+=(capistrano ruby-ed25519 ruby-bcrypt-pbkdf)
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# The wheelhouse: every file requirements.lock pins for this interpreter and platform, downloaded
# once (hash-checked) into the cache outside the clone. Keyed by the lock's sha256 and the
# interpreter, so a new lock or a new Python gets a new one; venvs install from it offline.
wheelhouse_dir() {
  local lock interpreter
  lock=$(sha256sum <"$PROJECT_DIR/requirements.lock" | cut -c1-16)
  interpreter=$(python3 -c 'import sys, sysconfig; print(f"py{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}")')
  echo "$SIDEKIQ_FLEET_CACHE/wheels/$lock-$interpreter"
}

# Downloads the wheelhouse with the given pip unless it is complete already. Wheels only: a
# package built here from an sdist would no longer match its hash in the lock.
ensure_wheelhouse() {
  local pip=$1 dir staging
  dir=$(wheelhouse_dir)
  [[ -f $dir/.complete ]] && return 0
  log "downloading the locked wheels into $dir"
  mkdir -p "$(dirname "$dir")"
  staging=$(mktemp -d "$dir.tmp.XXXXXX")
  "$pip" download -q --disable-pip-version-check --require-hashes --only-binary :all: \
    -r "$PROJECT_DIR/requirements.lock" -d "$staging"
  touch "$staging/.complete"
  # Renamed into place whole, so an interrupted download never leaves a wheelhouse that looks done.
  rm -rf "$dir"
  mv -T "$staging" "$dir"
}

# The virtualenv is rebuilt when requirements.lock changes: from the wheelhouse, offline, every
# file checked against its hash in the lock. --no-compile: byte-compiling every module at install
# (pulumi_aws alone has thousands) takes longer than the install itself. What the program imports is
# compiled once afterwards instead: where PYTHONDONTWRITEBYTECODE is set (CI machines), Python would
# otherwise compile it again on every `pulumi up` (1.5 s of the 50-host evaluation's 3.3 s).
ensure_venv() {
  local venv="$PROJECT_DIR/.venv"
  local stamp="$venv/.lock.sha256"
  local wanted
  wanted=$(sha256sum <"$PROJECT_DIR/requirements.lock" | cut -d' ' -f1)
  if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    log "creating the virtualenv in .venv (requirements.lock)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    ensure_wheelhouse "$venv/bin/pip"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-index --find-links "$(wheelhouse_dir)" \
      --require-hashes --no-compile -r "$PROJECT_DIR/requirements.lock"
    # Every package but pulumi_aws's services other than ec2, the only one the program uses.
    env -u PYTHONDONTWRITEBYTECODE "$venv/bin/python" -m compileall -q -j 0 \
      -x 'site-packages/pulumi_aws/(?!ec2/|config/|[^/]*\.py$)' "$venv/lib" >/dev/null
    echo "$wanted" >"$stamp"
  else
    # tests/test_packaging.py installs the project into a fresh venv from it.
    ensure_wheelhouse "$venv/bin/pip"
  fi
  # The project itself, editable, for its console script (`sidekiq-fleet`); redone when
  # pyproject.toml changes. No build isolation: the venv's setuptools builds it, offline.
  local project_stamp="$venv/.project.sha256"
  wanted=$(sha256sum <"$PROJECT_DIR/pyproject.toml" | cut -d' ' -f1)
  if [[ ! -x "$venv/bin/sidekiq-fleet" || "$(cat "$project_stamp" 2>/dev/null)" != "$wanted" ]]; then
    log "installing the project into .venv (pip install -e .)"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-index --no-deps --no-build-isolation \
      -e "$PROJECT_DIR"
    echo "$wanted" >"$project_stamp"
  fi
}
