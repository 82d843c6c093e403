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
  sum=$(cd "$root/dashboard" && find src scripts index.html package.json package-lock.json vite.config.* -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" ]]; then
    return 0
  fi
  echo "==> Building the dashboard"
  (cd "$root/dashboard" && npm run build --silent)
  echo "$sum" > "$stamp"
}

# Writes a Go module in DIR that imports the given packages (go.mod from BODY, a tools.go
# behind the `tools` build tag) and tidies it, so `go build PACKAGE` works inside it: how the
# scripts build Go tools from the module proxy (scripts/kube-tools.sh, scripts/cluster/tools.sh).
# Usage: write_go_tools_module DIR GO_MOD_BODY PACKAGE...
write_go_tools_module() {
  local dir=$1 body=$2 pkg
  shift 2
  mkdir -p "$dir"
  printf '%s\n' "$body" > "$dir/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for pkg in "$@"; do printf '\t_ "%s"\n' "$pkg"; done
    printf ')\n'
  } > "$dir/tools.go"
  (cd "$dir" && go mod tidy >/dev/null 2>"$dir/tidy.log" || { cat "$dir/tidy.log" >&2; return 1; })
}
