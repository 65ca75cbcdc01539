#!/usr/bin/env bash
# make browser-check: installs what the browser check needs (Debian's
# Chromium, Node.js, the pinned npm packages) and runs check.js, which
# starts liveengine, pushes a clip and drives headless Chromium. Not part of
# `make test`: it needs a browser and takes a couple of minutes.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "browser-check: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || {
  echo "browser-check: playwright-core needs Node.js 20 or newer (found $(node --version); Debian 12's nodejs is 18, NodeSource's 20 works)" >&2; exit 1; }

# npm ci only when the lock file changed since the last install.
if ! cmp -s package-lock.json node_modules/.browser-check.lock 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.browser-check.lock
fi

# The pages serve the hls.js copied into sfu/web/vendor; it must be the
# version the lock file pins.
if ! cmp -s node_modules/hls.js/dist/hls.min.js ../../sfu/web/vendor/hls.min.js; then
  echo "browser-check: sfu/web/vendor/hls.min.js differs from hls.js $(node -p 'require("hls.js/package.json").version') in package-lock.json;" >&2
  echo "  cp scripts/browser/node_modules/hls.js/dist/hls.min.js sfu/web/vendor/ and rebuild" >&2
  exit 1
fi

# A hard stop well past the normal run time; check.js stops what it started
# on SIGTERM.
exec timeout -k 20 360 node check.js
