#!/usr/bin/env bash
# Installs what LiveEngine needs to build, run and test on Debian 12, and
# nothing that is already there. Called by `make run` and `make test`, so a
# fresh machine needs no manual step.
set -euo pipefail

missing=()
need_bin() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_pc() { pkg-config --exists "$1" 2>/dev/null || missing+=("$2"); }

need_bin pkg-config pkg-config
need_bin gcc gcc
need_bin ffmpeg ffmpeg
need_bin ffprobe ffmpeg
need_bin redis-server redis-server
need_bin nginx nginx-light
need_bin wrk wrk
need_bin jq jq
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql)
if command -v pkg-config >/dev/null 2>&1; then
  need_pc libavcodec libavcodec-dev
  need_pc libavformat libavformat-dev
  need_pc libavfilter libavfilter-dev
  need_pc libavutil libavutil-dev
  need_pc libswscale libswscale-dev
  need_pc libswresample libswresample-dev
  need_pc libavdevice libavdevice-dev
else
  missing+=(libavcodec-dev libavformat-dev libavfilter-dev libavutil-dev libswscale-dev libswresample-dev libavdevice-dev)
fi

if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  pkgs=($(printf '%s\n' "${missing[@]}" | sort -u))
  echo "install-deps: installing ${pkgs[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
      echo "install-deps: need root to apt-get install ${pkgs[*]}" >&2; exit 1
    fi
  else SUDO=
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  echo "install-deps: Go is at /usr/local/go/bin; add it to PATH" >&2
fi
echo "install-deps: ok (ffmpeg $(ffmpeg -version | head -1 | awk '{print $3}'), redis $(redis-server --version | awk '{print $3}' | cut -d= -f2))"
