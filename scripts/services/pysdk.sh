# The official OpenAI (with its AzureOpenAI client), Anthropic, Google Gen AI
# (google-genai) and AWS (boto3) Python SDKs, for the steer-proxy tests
# (crates/steer-proxy/tests/sdk.rs drives crates/steer-proxy/tests/py/
# sdk_client.py, azure_client.py, genai_client.py and bedrock_client.py). No server: the tests start the proxy and a fake upstream
# themselves. Sourced by scripts/test.sh (which defines log).
#
#   install_pysdk -> a Python venv at ${STEER_PYSDK_VENV:-/var/cache/steer/pysdk-venv}
#                    with `openai`, `anthropic`, `google-genai` and `boto3` (created once; only what is
#                    missing is installed). Its own venv, so the SDKs' pins
#                    never meet moto's.
#   start_pysdk   -> exports STEER_TEST_PYSDK_PYTHON=<venv>/bin/python
#   stop_pysdk    -> nothing to stop

# shellcheck shell=bash
pysdk_packages="python3-venv"

_pysdk_venv() { printf '%s' "${STEER_PYSDK_VENV:-/var/cache/steer/pysdk-venv}"; }

install_pysdk() {
  local venv missing=()
  venv=$(_pysdk_venv)
  if ! [ -x "$venv/bin/python" ]; then
    log "creating Python venv at $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -c 'import openai' >/dev/null 2>&1 || missing+=(openai)
  "$venv/bin/python" -c 'import anthropic' >/dev/null 2>&1 || missing+=(anthropic)
  "$venv/bin/python" -c 'import boto3' >/dev/null 2>&1 || missing+=(boto3)
  "$venv/bin/python" -c 'from google import genai' >/dev/null 2>&1 || missing+=(google-genai)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing into $venv: ${missing[*]}"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
  fi
}

start_pysdk() {
  local venv
  venv=$(_pysdk_venv)
  if ! "$venv/bin/python" -c 'import openai, anthropic, boto3; from google import genai' >/dev/null 2>&1; then
    log "pysdk: openai/anthropic/boto3/google-genai missing in $venv (run install_pysdk)"
    return 1
  fi
  export STEER_TEST_PYSDK_PYTHON="$venv/bin/python"
  log "python SDKs: $("$venv/bin/python" -c 'import openai, anthropic, boto3; from google import genai; print("openai", openai.__version__, "anthropic", anthropic.__version__, "google-genai", genai.__version__, "boto3", boto3.__version__)') ($STEER_TEST_PYSDK_PYTHON)"
}

stop_pysdk() { :; }
