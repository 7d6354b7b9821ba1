#!/usr/bin/env bash
# Sets up a CUDA 13.0 build toolchain from PyPI wheels on a machine with no GPU and no CUDA install,
# enough to compile candle's and cudarc's `cuda` features (nvcc, headers, link names, a libcuda stub
# built from scripts/libcuda-symbols.txt, the driver API symbols cudarc links against).
# The binaries it builds run only where a real NVIDIA driver is present.
#
# usage (from the repository root):
#         source scripts/cuda-toolchain.sh [DIR]      (DIR defaults to $HOME/.cache/cuda-13.0)
# then:   cargo build --release --features cuda -p trainer
# Needs python3 with venv/pip and gcc. Measured: the pip install takes about 10 s (1.2 GB download);
# a first candle `cuda` build about 9 minutes on 2 cores (candle-kernels' nvcc step), later builds
# reuse it. Use 13.0: NVIDIA driver 580.x matches nvcc 13.0; PTX from a newer nvcc may not load on
# an older driver.
set -e
_dir=${1:-$HOME/.cache/cuda-13.0}
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -x "$_dir/venv/bin/python" ]; then
  python3 -m venv "$_dir/venv"
fi
if ! ls "$_dir"/venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
  "$_dir/venv/bin/pip" install --quiet "cuda-toolkit[nvcc,crt,nvvm,cudart,nvrtc,cublas,curand,cccl]==13.0.2"
fi
CUDA_TK=$(ls -d "$_dir"/venv/lib/python3*/site-packages/nvidia/cu13 | head -n 1)
mkdir -p "$_dir/link/lib"
for n in cudart:13 nvrtc:13 cublas:13 cublasLt:13 curand:10; do
  ln -sf "$CUDA_TK/lib/lib${n%%:*}.so.${n##*:}" "$_dir/link/lib/lib${n%%:*}.so"
done
# Rebuild the stub when the symbol list changes (it is part of this repository).
if [ ! -f "$_dir/link/lib/libcuda.so" ] || [ "$_here/libcuda-symbols.txt" -nt "$_dir/link/lib/libcuda.so" ]; then
  sed 's/.*/void &(void){}/' "$_here/libcuda-symbols.txt" > "$_dir/link/cuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$_dir/link/lib/libcuda.so" "$_dir/link/cuda_stub.c"
fi
export CUDA_TK
export PATH=$CUDA_TK/bin:$PATH
export NVCC=$CUDA_TK/bin/nvcc
export CUDA_ROOT=$_dir/link
export CUDA_PATH=$_dir/link
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13000
export CPATH=$CUDA_TK/include${CPATH:+:$CPATH}
# candle-kernels compiles its MoE/GGUF kernels through cudaforge, which uses half the cores unless
# told otherwise: one nvcc at a time on a 2-core machine, ~8 minutes of that build alone.
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
echo "CUDA 13.0 toolchain ready: nvcc $(nvcc --version | tail -n 1); CUDA_ROOT=$CUDA_ROOT CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
set +e
