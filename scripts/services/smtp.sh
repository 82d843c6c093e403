#!/usr/bin/env bash
# Starts the test SMTP server (scripts/services/smtp.py), installing Debian's
# python3-aiosmtpd first when it is missing. Arguments go to smtp.py, e.g.
#   scripts/services/smtp.sh --maildir /tmp/mail --port 2525
#   scripts/services/smtp.sh --install-only
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Debian's package installs for Debian's interpreter, which a pyenv or venv may shadow.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
if ! "$py" -c 'import aiosmtpd' 2>/dev/null; then
    echo "Installing python3-aiosmtpd…" >&2
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-aiosmtpd >&2
fi
if [ "${1:-}" = "--install-only" ]; then exit 0; fi
exec "$py" "$here/smtp.py" "$@"
