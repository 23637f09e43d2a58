# Sourced by scripts/demo and scripts/test: make .venv with the project installed, every
# dependency at the exact version and hash its lock file names (scripts/lock regenerates them).
# On a stock Debian, `python3 -m venv` needs the python3-venv package; install it when
# root, otherwise say exactly what to run.
ensure_venv() {  # ensure_venv LOCKFILE  (requirements.lock or requirements-test.lock)
  if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv >/dev/null 2>&1; then
      rm -rf .venv
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
      else
        echo "need python3-venv: run 'sudo apt-get install python3-venv'" >&2
        return 1
      fi
    fi
  fi
  # Hash-checked: a file whose sha256 the lock does not name is refused, wherever pip finds it.
  .venv/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps -r "$1"
  # The project itself, with the locked setuptools: nothing unpinned is fetched to build it.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
}
