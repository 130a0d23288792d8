# Helpers sourced by scripts/test.sh and scripts/space_check.sh (bash).

# fresh_venv DIR: delete DIR and create a new virtual environment there; prints DIR.
# The new pip reads the same pip config files and PIP_* variables as the system one (find-links
# to the local torch wheel, index mirrors, the cache), so only the installed packages are new.
# DEPTHWEB_REUSE_VENV=1 keeps an existing DIR (quick local reruns only; CI never sets it).
fresh_venv() {
  local dir=$1
  if [ "${DEPTHWEB_REUSE_VENV:-0}" = 1 ] && [ -x "$dir/bin/python" ]; then
    echo "$dir"
    return
  fi
  rm -rf "$dir"
  "${PYTHON:-python3}" -m venv "$dir" >&2
  "$dir/bin/python" -m pip install -q --upgrade pip >&2
  echo "$dir"
}

# install_onnx2torch VENV: onnx2torch (the torch path of the ONNX backends on CUDA) without its
# torchvision dependency: torchvision from PyPI does not match a local CPU torch wheel, and the
# converter needs it only for NMS/RoIAlign graphs (depthweb/models/onnx_torch.py). On Python 3.10
# (Spaces, the Docker image) requirements.txt installs it with its dependencies instead.
install_onnx2torch() {
  local pin
  pin=$(grep -E '^onnx2torch' requirements.txt | cut -d';' -f1 | tr -d ' ')
  "$1/bin/python" -m pip install -q --no-compile --no-deps "$pin"
}
