"""Builds the extension wsls._C: C++ kernels always, CUDA kernels whenever a CUDA toolkit is found.

Environment:
  WSLS_FORCE_CPU=1         build the CPU kernels only, even with a toolkit present
  WSLS_REQUIRE_CUDA=1      fail unless the CUDA kernels can be built (CI)
  CUDA_HOME / CUDA_PATH    the toolkit root (the folder whose lib64/ holds libcudart)
  TORCH_CUDA_ARCH_LIST     GPU architectures; default: the visible GPUs', else "8.0;9.0"
  MAX_JOBS                 parallel compile jobs (ninja)

Install: pip install --no-build-isolation -e .
"""

import glob
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
VERSION = "0.1.0"
DEFAULT_ARCHS = "8.0;9.0"


def log(msg: str) -> None:
    print(f"[wsls setup] {msg}", file=sys.stderr, flush=True)


def has_cudart(root: Path) -> bool:
    return any(glob.glob(str(root / "lib64" / "libcudart.so*"))) or any(
        glob.glob(str(root / "lib" / "x64" / "cudart.lib"))
    )


def find_cuda_home() -> Path | None:
    """CUDA_HOME/CUDA_PATH, else /usr/local/cuda, else the folder above nvcc's bin/ with lib64."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    for cand in candidates:
        if cand and (Path(cand) / "bin" / "nvcc").exists() and has_cudart(Path(cand)):
            return Path(cand)
    return None


def configure_cuda() -> Path | None:
    if os.environ.get("WSLS_FORCE_CPU", "0") not in ("", "0"):
        log("WSLS_FORCE_CPU is set: building the CPU kernels only")
        return None
    cuda_home = find_cuda_home()
    if cuda_home is None:
        log("no CUDA toolkit found (CUDA_HOME, /usr/local/cuda, nvcc on PATH): CPU kernels only")
        return None
    # torch.utils.cpp_extension reads CUDA_HOME when imported, so set it first.
    os.environ["CUDA_HOME"] = str(cuda_home)
    return cuda_home


cuda_home = configure_cuda()
if cuda_home is None and os.environ.get("WSLS_REQUIRE_CUDA", "0") not in ("", "0"):
    sys.exit(
        "[wsls setup] WSLS_REQUIRE_CUDA is set but the CUDA kernels cannot be built (see above)"
    )

import torch  # noqa: E402
from torch.utils.cpp_extension import (  # noqa: E402
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

with_cuda = cuda_home is not None
if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
    if torch.cuda.is_available():
        caps = sorted(
            {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        )
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(f"{a}.{b}" for a, b in caps)
    else:
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS

csrc = ROOT / "csrc"
sources = ["csrc/wsls.cpp", "csrc/python_module.cpp"]
sources += sorted(str(p.relative_to(ROOT)) for p in csrc.glob("*/*_cpu.cpp"))
cuda_sources = sorted(str(p.relative_to(ROOT)) for p in csrc.glob("*/*_cuda.cpp"))
cuda_sources += sorted(str(p.relative_to(ROOT)) for p in csrc.glob("*/*_kernel.cu"))

# build_info() reads these; a header avoids quoting ';' through compiler command lines.
generated = ROOT / "build" / "generated"
generated.mkdir(parents=True, exist_ok=True)
cuda_version = torch.version.cuda or ""
config_lines = [
    "#pragma once",
    f'#define WSLS_VERSION "{VERSION}"',
    f'#define WSLS_CUDA_VERSION "{cuda_version}"',
    f'#define WSLS_CUDA_ARCH_LIST "{os.environ.get("TORCH_CUDA_ARCH_LIST", "")}"',
]
config = "\n".join(config_lines) + "\n"
header = generated / "wsls_build_config.h"
if not header.exists() or header.read_text() != config:
    header.write_text(config)

# -fopenmp: at::parallel_for is header code that runs serially unless OpenMP is on.
cxx_flags = ["-O3", "-fopenmp", "-Wno-psabi"]
link_flags = ["-fopenmp"]
nvcc_flags = ["-O3", "-lineinfo"]
include_dirs = [str(csrc), str(generated)]
if with_cuda:
    cxx_flags.append("-DWSLS_WITH_CUDA")
    nvcc_flags.append("-DWSLS_WITH_CUDA")
    ext = CUDAExtension(
        "wsls._C",
        sources + cuda_sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
        extra_link_args=link_flags,
    )
else:
    ext = CppExtension(
        "wsls._C",
        sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_flags,
    )

log(f"torch {torch.__version__} (CUDA {cuda_version or 'none'}), python {sys.version.split()[0]}")
if with_cuda:
    log(
        f"CUDA kernels: ON, toolkit {cuda_home}, "
        f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}"
    )
    log(f"CUDA sources: {' '.join(cuda_sources)}")
else:
    log("CUDA kernels: OFF")
log(f"C++ sources: {' '.join(sources)}")

setup(
    name="wsls",
    version=VERSION,
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
