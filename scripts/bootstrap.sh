# Sourced by scripts/run-daemon and scripts/run-tests: a virtual environment in .venv with the
# project installed (editable), reinstalled only when pyproject.toml changes; PostgreSQL server
# binaries installed from Debian's packages when the machine has none and we may install them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras="${1:-}"
python="${PYTHON:-python3}"

have_pg_server() {
    command -v initdb >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && return 0
    return 1
}
if ! have_pg_server; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing the PostgreSQL server from Debian's packages" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "bootstrap: no PostgreSQL server binaries (initdb); install the postgresql package" >&2
        exit 1
    fi
fi

# pgaudit makes admin_log reads auditable (docs/SCHEMA.md); its test needs it. Best effort: the
# engine runs without it.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${extras}" = "test" ]; then
    for bindir in /usr/lib/postgresql/*/bin; do
        version=$(basename "$(dirname "$bindir")")
        if [ ! -e "/usr/lib/postgresql/$version/lib/pgaudit.so" ]; then
            (apt-get install -y -qq "postgresql-$version-pgaudit" >/dev/null 2>&1 ||
             { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "postgresql-$version-pgaudit" >/dev/null 2>&1; }) ||
                echo "bootstrap: postgresql-$version-pgaudit not installed; its test will be skipped" >&2
        fi
    done
fi

# Tests drive real programs from Debian's packages: chromium (the console and the pages a message
# links to, through Playwright), prometheus and amtool (the Alertmanager API). Best effort, one
# apt-get for all that are missing; a test whose program is absent is skipped, naming it.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${extras}" = "test" ]; then
    wanted=()
    command -v chromium >/dev/null 2>&1 || wanted+=(chromium)
    command -v prometheus >/dev/null 2>&1 || wanted+=(prometheus)
    command -v amtool >/dev/null 2>&1 || wanted+=(prometheus-alertmanager)
    if [ "${#wanted[@]}" -gt 0 ]; then
        echo "bootstrap: installing ${wanted[*]} from Debian's packages for the tests" >&2
        (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null 2>&1 ||
         { apt-get update -qq >/dev/null 2>&1 &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null 2>&1; }) ||
            echo "bootstrap: could not install ${wanted[*]}; the tests that need them will be skipped" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# The editable install maps top-level packages when it runs: a new package means a reinstall too.
stamp=".venv/.installed-$( (cat pyproject.toml requirements.lock; ls -d */__init__.py) | sha256sum | cut -c1-16)${extras:+-$extras}"
if [ ! -e "$stamp" ]; then
    # The versions the container image installs (requirements.lock) are the ones tested here; the
    # hashes are dropped because pip checks none when the project itself is installed editable.
    sed -e '/--hash=/d' -e '/^ *#/d' -e 's/ *\\$//' requirements.lock > .venv/constraints.txt
    .venv/bin/pip install --quiet --disable-pip-version-check -c .venv/constraints.txt -e ".${extras:+[$extras]}"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
