# Shared helpers of the microdash scripts. Source it; it defines functions only.

# Installs Debian packages that are missing (apt-get update at most once per run).
# Says what it does on stderr only: callers (scripts/services.sh start) print an environment
# on stdout that test.sh evaluates, so nothing else may reach stdout.
ensure_debs() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  echo "==> Installing Debian packages: ${missing[*]}" >&2
  if [[ -z "${_MICRODASH_APT_UPDATED:-}" ]]; then
    apt-get update -qq >&2
    _MICRODASH_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>"${TMPDIR:-/tmp}/microdash-apt.log" \
    || { cat "${TMPDIR:-/tmp}/microdash-apt.log" >&2; return 1; }
}

# `npm ci` only when package-lock.json changed since the last install in that folder.
npm_ci_cached() {
  local dir=$1 stamp
  stamp="$dir/node_modules/.microdash-lock.sha256"
  if [[ -f "$stamp" ]] && (cd "$dir" && sha256sum --status -c node_modules/.microdash-lock.sha256 2>/dev/null); then
    return 0
  fi
  echo "==> npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  (cd "$dir" && sha256sum package-lock.json > node_modules/.microdash-lock.sha256)
}

# Builds the dashboard into dashboard/dist when its sources changed.
build_dashboard() {
  local root=$1 stamp sum
  npm_ci_cached "$root/dashboard"
  stamp="$root/dashboard/dist/.microdash-src.sha256"
  sum=$(cd "$root/dashboard" && find src index.html package-lock.json vite.config.* -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" ]]; then
    return 0
  fi
  echo "==> Building the dashboard"
  (cd "$root/dashboard" && npm run build --silent)
  echo "$sum" > "$stamp"
}
