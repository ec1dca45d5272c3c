// The Python module wsls._C: importing it loads the library, which runs the op registrations.
// build_info() says what this build holds. Plain CPython API: no pybind11, fast to compile.
#include <ATen/Parallel.h>
#include <Python.h>
#include <torch/version.h>

#include "debug_checks.h"
#include "wsls_build_config.h"

namespace {

PyObject* build_info(PyObject*, PyObject*) {
  PyObject* info = PyDict_New();
  if (info == nullptr) return nullptr;
  auto set = [&](const char* key, PyObject* value) {
    PyDict_SetItemString(info, key, value);
    Py_DECREF(value);
  };
  set("version", PyUnicode_FromString(WSLS_VERSION));
  set("torch_version", PyUnicode_FromString(TORCH_VERSION));
#ifdef WSLS_WITH_CUDA
  set("cuda", Py_NewRef(Py_True));
  set("cuda_version", PyUnicode_FromString(WSLS_CUDA_VERSION));
  set("cuda_arch_list", PyUnicode_FromString(WSLS_CUDA_ARCH_LIST));
#else
  set("cuda", Py_NewRef(Py_False));
  set("cuda_version", Py_NewRef(Py_None));
  set("cuda_arch_list", PyUnicode_FromString(""));
#endif
  set("num_threads", PyLong_FromLong(at::get_num_threads()));
  return info;
}

PyObject* debug_checks_enabled(PyObject*, PyObject*) {
  return PyBool_FromLong(wsls::debug_checks_enabled());
}

PyObject* set_debug_checks(PyObject*, PyObject* arg) {
  const int enabled = PyObject_IsTrue(arg);
  if (enabled < 0) return nullptr;
  return PyBool_FromLong(wsls::set_debug_checks(enabled != 0));
}

PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS,
     "build_info() -> dict: wsls version, torch version built against, whether CUDA kernels are "
     "compiled in (and for which CUDA version and architectures), CPU threads."},
    {"debug_checks_enabled", debug_checks_enabled, METH_NOARGS,
     "debug_checks_enabled() -> bool: whether the CUDA ops check tensor values (finite inputs, "
     "seeds in the volume) at the price of a host synchronisation (csrc/debug_checks.h)."},
    {"set_debug_checks", set_debug_checks, METH_O,
     "set_debug_checks(enabled) -> bool: switch the CUDA ops' value checks; returns the previous "
     "setting."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "wsls compiled ops (torch.ops.wsls)", -1,
                      methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
