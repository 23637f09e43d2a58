# Sourced by scripts/demo and scripts/test: make .venv with the project installed.
# On a stock Debian, `python3 -m venv` needs the python3-venv package; install it when
# root, otherwise say exactly what to run.
ensure_venv() {  # ensure_venv EXTRA  (e.g. "" or "[test]")
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
  .venv/bin/pip install -q --disable-pip-version-check -e ".$1"
}
