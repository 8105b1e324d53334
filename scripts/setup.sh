#!/usr/bin/env bash
# Prepare a Debian 12 machine for developing and testing llm_sandbox. Idempotent; fast when nothing is missing.
#
#   1. installs the missing Debian packages among: docker.io debootstrap python3 python3-venv python3-pip
#      ca-certificates iproute2 bubblewrap (plus $LLM_SANDBOX_EXTRA_PACKAGES); apt-get update runs only when one
#      is missing
#   2. starts the Docker engine if it does not answer (dockerd detached, log in /var/log/dockerd.log) and
#      recreates the docker0 bridge if it vanished while the engine runs
#   3. creates .venv (with the first python3 on PATH, >= 3.10; else Debian's) and installs the project with
#      pip install -e '.[dev]' (again only when pyproject.toml changed)
#   4. builds the sandbox images the tests need: python, or the languages in $LLM_SANDBOX_LANGS ("all" = every one)
#   5. with LLM_SANDBOX_PODMAN=1: installs Podman (runc, catatonit), writes /etc/containers/containers.conf when
#      it is missing, starts the Podman API service on /run/podman/podman.sock and copies the images to Podman:
#      python, or the languages in $LLM_SANDBOX_PODMAN_LANGS (scripts/test.sh: the same as $LLM_SANDBOX_LANGS)
#
# Runs as root on a new machine (installing packages, starting dockerd and the first image build need root).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

PACKAGES=(docker.io debootstrap python3 python3-venv python3-pip ca-certificates iproute2 bubblewrap)
read -r -a EXTRA_PACKAGES <<<"${LLM_SANDBOX_EXTRA_PACKAGES:-}"
WITH_PODMAN="${LLM_SANDBOX_PODMAN:-0}"
if [ "$WITH_PODMAN" = 1 ]; then
    PACKAGES+=(podman catatonit runc)
fi
PODMAN_SOCKET=/run/podman/podman.sock
read -r -a LANGS <<<"${LLM_SANDBOX_LANGS:-python}"
VENV="$REPO_ROOT/.venv"
PYPROJECT_STAMP="$VENV/.llm-sandbox-pyproject.sha256"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
DOCKERD_PIDFILE="${DOCKERD_PIDFILE:-/var/run/docker.pid}"

say() { printf 'setup: %s\n' "$*"; }
die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}
need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root: run scripts/setup.sh as root (for example with sudo)"
}

# --- 1. Debian packages ----------------------------------------------------------------------------------------
# (dpkg-query, not "dpkg -s | grep -q": with pipefail, grep's early exit makes dpkg fail with SIGPIPE)
is_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

APT_UPDATED=0
apt_install() {
    need_root "installing $*"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

missing=()
for package in "${PACKAGES[@]}" "${EXTRA_PACKAGES[@]}"; do
    is_installed "$package" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
else
    say "Debian packages present"
fi

# --- 2. Docker engine ------------------------------------------------------------------------------------------
docker_ready() { docker version >/dev/null 2>&1; }

dockerd_running() {
    local pid
    [ -r "$DOCKERD_PIDFILE" ] || return 1
    pid="$(cat "$DOCKERD_PIDFILE" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

if docker_ready; then
    say "Docker engine running"
else
    if dockerd_running; then
        say "dockerd is starting; waiting for it"
    else
        need_root "starting dockerd"
        say "starting dockerd (log: $DOCKERD_LOG)"
        # From /: the engine and its shims write files (an "oom" marker, for one) in their working directory.
        (cd / && setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &)
    fi
    for _ in $(seq 1 120); do
        docker_ready && break
        sleep 0.5
    done
    docker_ready || die "the Docker engine did not answer within 60 s; see $DOCKERD_LOG"
    say "Docker engine ready"
fi

# The default bridge has been seen to vanish while the engine runs ("could not find bridge docker0").
bridge="$(docker network inspect bridge --format '{{index .Options "com.docker.network.bridge.name"}}' 2>/dev/null || true)"
case "$bridge" in "" | *"<"*) bridge=docker0 ;; esac
if ! ip link show "$bridge" >/dev/null 2>&1; then
    need_root "recreating the $bridge bridge"
    # The engine's record of the network: "gateway|subnet" (the gateway is often left out: then subnet + 1).
    address="$(docker network inspect bridge \
        --format '{{range .IPAM.Config}}{{.Gateway}}|{{.Subnet}}{{end}}' 2>/dev/null || true)"
    gateway="${address%%|*}"
    subnet="${address#*|}"
    cidr=172.17.0.1/16
    if [[ "$subnet" =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.([0-9]+)/([0-9]+)$ ]]; then
        if [ -z "$gateway" ]; then
            gateway="${BASH_REMATCH[1]}.$((BASH_REMATCH[2] + 1))"
        fi
        cidr="$gateway/${BASH_REMATCH[3]}"
    fi
    say "recreating the $bridge bridge ($cidr)"
    ip link add "$bridge" type bridge
    ip addr add "$cidr" dev "$bridge"
    ip link set "$bridge" up
fi

# --- 3. Virtual environment ------------------------------------------------------------------------------------
python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; }

make_venv() {
    local python
    python="$(command -v python3 || true)"
    if [ -n "$python" ] && python_ok "$python" && "$python" -m venv "$VENV" >/dev/null 2>&1; then
        say "created .venv with $python ($("$VENV/bin/python" -V 2>&1))"
        return
    fi
    rm -rf "$VENV"
    # Debian's own interpreter needs python3-venv (ensurepip) to create environments.
    is_installed python3-venv || apt_install python3-venv
    python_ok /usr/bin/python3 || die "no python3 >= 3.10 found (tried ${python:-none} and /usr/bin/python3)"
    /usr/bin/python3 -m venv "$VENV" || die "could not create .venv with /usr/bin/python3"
    say "created .venv with /usr/bin/python3 ($("$VENV/bin/python" -V 2>&1))"
}

if [ -x "$VENV/bin/python" ] && python_ok "$VENV/bin/python"; then
    say ".venv present ($("$VENV/bin/python" -V 2>&1))"
else
    rm -rf "$VENV"
    make_venv
fi

# Reinstall when pyproject.toml changed, or when the venv does not resolve llm_sandbox to this checkout.
want_hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have_hash="$(cat "$PYPROJECT_STAMP" 2>/dev/null || true)"
installed_here() {
    "$VENV/bin/python" - "$REPO_ROOT/src/llm_sandbox" <<'EOF' >/dev/null 2>&1
import importlib.util, os, sys
spec = importlib.util.find_spec("llm_sandbox")
origin = spec.origin if spec is not None else None
sys.exit(origin is None or os.path.dirname(os.path.realpath(origin)) != os.path.realpath(sys.argv[1]))
EOF
}
if [ "$want_hash" != "$have_hash" ] || ! installed_here; then
    say "pip install -e '.[dev]'"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    printf '%s\n' "$want_hash" >"$PYPROJECT_STAMP"
else
    say "project installed in .venv (pyproject.toml unchanged)"
fi

# --- 4. Sandbox images -----------------------------------------------------------------------------------------
say "images: ${LANGS[*]}"
"$VENV/bin/python" -m llm_sandbox.images build "${LANGS[@]}"

# --- 5. Podman (optional) --------------------------------------------------------------------------------------
podman_ready() { podman --url "unix://$PODMAN_SOCKET" version >/dev/null 2>&1; }

if [ "$WITH_PODMAN" = 1 ]; then
    # crun refuses this machine's cgroup layout and Podman's default ulimits exceed the host's hard limits.
    if [ ! -e /etc/containers/containers.conf ]; then
        need_root "writing /etc/containers/containers.conf"
        mkdir -p /etc/containers
        cat >/etc/containers/containers.conf <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=16384:16384"]
init_path = "/usr/bin/catatonit"

[engine]
runtime = "runc"
EOF
        say "wrote /etc/containers/containers.conf"
    fi
    if podman_ready; then
        say "Podman service running"
    else
        need_root "starting the Podman service"
        mkdir -p "$(dirname "$PODMAN_SOCKET")"
        say "starting the Podman service on $PODMAN_SOCKET (log: /var/log/podman-service.log)"
        (cd / && setsid nohup podman system service --time=0 "unix://$PODMAN_SOCKET" >>/var/log/podman-service.log 2>&1 </dev/null &)
        for _ in $(seq 1 60); do
            podman_ready && break
            sleep 0.5
        done
        podman_ready || die "the Podman service did not answer within 30 s; see /var/log/podman-service.log"
    fi
    # The contract suite runs Python on Podman; the language suite and the README examples run every language
    # there too when asked (copying the six other images takes about 50 s the first time, nothing once current).
    read -r -a PODMAN_LANGS <<<"${LLM_SANDBOX_PODMAN_LANGS:-python}"
    "$VENV/bin/python" -m llm_sandbox.images copy --to podman "${PODMAN_LANGS[@]}"
fi

say "done in ${SECONDS}s"
