// CUDA kernels of attention_cam. CUDA headers only (no torch): raw pointers and cudaStream_t.
// The per-element math is attention_cam_math.h, shared with the CPU kernels.
//
// Forward, five small launches around one pass over the features:
//   1. pool_cam:      block (h, channel group, b) reads the W x D slabs of its channels once:
//                     CAM partial over the group, row sums (per w) and column sums (per d).
//   2. pool_finalize: row/column partials -> the three axis means (pooled, B x L x K).
//   3. scores:        per sample: attention logits, softmax per axis, image logit, axis weights.
//   4. acam_max:      CAM = sum of group partials; unnormalised ACAM; per-block maxima.
//   5. acam_normalise: divide by the per-sample maximum.
// Backward: per-sample slice coefficients, a write-only pass for the feature gradient, and an
// ordered reduction of the weight gradients. No float atomics: results are deterministic.

#include "../cuda_elements.cuh"

#include <algorithm>

#include "attention_cam.h"
#include "attention_cam_math.h"

namespace wsls {
namespace attention_cam {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSmemBytes = 48 * 1024;
constexpr int64_t kTileElems = 1024;

int num_sms() {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  return sms > 0 ? sms : 1;
}

// How the forward splits its work; both the workspace size and the launches use it.
struct ForwardPlan {
  int64_t groups, group_size;  // channel groups of the pooling pass
  int64_t tile_rows;           // W-rows per tile (tile_rows * D elements)
  int64_t max_blocks;          // blocks per sample of the ACAM passes
  size_t pool_smem;
  int64_t campart, rowpart, colpart, weights, blockmax;  // workspace offsets in acc_t elements
  int64_t total;
};

ForwardPlan plan_forward(const Sizes& sz, int64_t acc_bytes, int sms) {
  ForwardPlan p;
  p.tile_rows = std::max<int64_t>(1, std::min<int64_t>(sz.W, kTileElems / sz.D));
  const int64_t tile = p.tile_rows * sz.D;
  const int64_t slabs = std::max<int64_t>(1, sz.H * sz.B);
  int64_t groups = std::min<int64_t>(sz.K, std::max<int64_t>(1, ceil_div<int64_t>(2 * sms, slabs)));
  int64_t group_size = ceil_div<int64_t>(sz.K, groups);
  const int64_t max_group = std::max<int64_t>(1, kSmemBytes / acc_bytes / sz.D - 2 * tile / sz.D);
  group_size = std::min(group_size, max_group);
  p.group_size = group_size;
  p.groups = ceil_div<int64_t>(sz.K, group_size);
  p.pool_smem = static_cast<size_t>((2 * tile + group_size * sz.D) * acc_bytes);
  const int64_t voxels = sz.voxels();
  p.max_blocks = std::max<int64_t>(
      1, std::min<int64_t>({ceil_div<int64_t>(voxels, kThreads),
                            std::max<int64_t>(1, 4 * sms / std::max<int64_t>(sz.B, 1)), 1024}));
  p.campart = 0;
  p.rowpart = p.campart + p.groups * sz.B * voxels;
  p.colpart = p.rowpart + sz.B * sz.K * sz.H * sz.W;
  p.weights = p.colpart + sz.B * sz.K * sz.H * sz.D;
  p.blockmax = p.weights + sz.B * sz.L();
  p.total = p.blockmax + sz.B * p.max_blocks;
  return p;
}

template <typename T, typename acc_t>
__global__ void pool_cam_kernel(const T* __restrict__ features, const T* __restrict__ cls_weight,
                                Sizes sz, int64_t group_size, int64_t tile_rows,
                                acc_t* __restrict__ campart, acc_t* __restrict__ rowpart,
                                acc_t* __restrict__ colpart) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* smem = reinterpret_cast<acc_t*>(smem_raw);
  const int64_t K = sz.K, H = sz.H, W = sz.W, D = sz.D, WD = W * D;
  const int64_t h = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
  const int64_t k0 = g * group_size;
  const int64_t kn = min(group_size, K - k0);
  const int64_t tile_cap = tile_rows * D;
  acc_t* tile = smem;
  acc_t* cam = tile + tile_cap;
  acc_t* colacc = cam + tile_cap;
  for (int64_t i = threadIdx.x; i < kn * D; i += blockDim.x) colacc[i] = acc_t(0);
  __syncthreads();
  for (int64_t w0 = 0; w0 < W; w0 += tile_rows) {
    const int64_t rows = min(tile_rows, W - w0);
    const int64_t n = rows * D;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) cam[i] = acc_t(0);
    for (int64_t kl = 0; kl < kn; ++kl) {
      const int64_t k = k0 + kl;
      const T* src = features + ((b * K + k) * H + h) * WD + w0 * D;
      const acc_t wk = load<acc_t>(cls_weight + k);
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const acc_t v = load<acc_t>(src + i);
        tile[i] = v;
        cam[i] += wk * v;  // each thread owns the same indices i in every pass
      }
      __syncthreads();
      for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
        acc_t s = 0;
        for (int64_t d = 0; d < D; ++d) s += tile[r * D + d];
        rowpart[((b * K + k) * H + h) * W + w0 + r] = s;
      }
      for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        acc_t s = 0;
        for (int64_t r = 0; r < rows; ++r) s += tile[r * D + d];
        colacc[kl * D + d] += s;
      }
      __syncthreads();
    }
    acc_t* dst = campart + (g * sz.B + b) * sz.voxels() + h * WD + w0 * D;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = cam[i];
  }
  for (int64_t i = threadIdx.x; i < kn * D; i += blockDim.x) {
    const int64_t kl = i / D, d = i % D;
    colpart[((b * K + k0 + kl) * H + h) * D + d] = colacc[i];
  }
}

template <typename acc_t>
__global__ void pool_finalize_kernel(const acc_t* __restrict__ rowpart,
                                     const acc_t* __restrict__ colpart, Sizes sz,
                                     acc_t* __restrict__ pooled) {
  const int64_t K = sz.K, H = sz.H, W = sz.W, D = sz.D, L = sz.L();
  const int64_t total = sz.B * L * K;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = idx % K, l = (idx / K) % L, b = idx / (K * L);
    const int64_t bk = b * K + k;
    acc_t s = 0;
    if (l < H) {
      for (int64_t w = 0; w < W; ++w) s += rowpart[(bk * H + l) * W + w];
      s *= acc_t(1) / acc_t(slice_count(0, H, W, D));
    } else if (l < H + W) {
      for (int64_t h = 0; h < H; ++h) s += rowpart[(bk * H + h) * W + (l - H)];
      s *= acc_t(1) / acc_t(slice_count(1, H, W, D));
    } else {
      for (int64_t h = 0; h < H; ++h) s += colpart[(bk * H + h) * D + (l - H - W)];
      s *= acc_t(1) / acc_t(slice_count(2, H, W, D));
    }
    pooled[idx] = s;
  }
}

__device__ __forceinline__ int axis_of(int64_t l, int64_t H, int64_t W) {
  return l < H ? 0 : (l < H + W ? 1 : 2);
}

// Attention logits, class scores and softmax of one sample into shared g, z, s; returns nothing,
// leaves sum_l s z per axis in sz_axis[3]. Block-wide; ends synchronised.
template <typename T, typename acc_t>
__device__ void sample_softmax(const acc_t* P, const T* cls_weight, const T* att_weight,
                               const Sizes& sz, acc_t* g, acc_t* z, acc_t* s, acc_t* sz_axis) {
  const int64_t K = sz.K, H = sz.H, W = sz.W, D = sz.D, L = sz.L();
  for (int64_t l = threadIdx.x; l < L; l += blockDim.x) {
    const int axis = axis_of(l, H, W);
    slice_terms(P + l * K, att_weight + axis * K, cls_weight, K, g + l, z + l);
  }
  __syncthreads();
  if (threadIdx.x < 3) {
    const int axis = threadIdx.x;
    const int64_t begin = axis_begin(axis, H, W), n = axis_len(axis, H, W, D);
    sz_axis[axis] = axis_softmax(g + begin, z + begin, n, s + begin);
  }
  __syncthreads();
}

template <typename T, typename acc_t>
__global__ void scores_kernel(const acc_t* __restrict__ pooled, const T* __restrict__ cls_weight,
                              const T* __restrict__ cls_bias, const T* __restrict__ att_weight,
                              Sizes sz, T* __restrict__ logits, T* __restrict__ scores_h,
                              T* __restrict__ scores_w, T* __restrict__ scores_d,
                              acc_t* __restrict__ weights) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* g = reinterpret_cast<acc_t*>(smem_raw);
  const int64_t H = sz.H, W = sz.W, D = sz.D, L = sz.L();
  acc_t* z = g + L;
  acc_t* s = z + L;
  __shared__ acc_t sz_axis[3];
  const int64_t b = blockIdx.x;
  sample_softmax(pooled + b * L * sz.K, cls_weight, att_weight, sz, g, z, s, sz_axis);
  T* out[3] = {scores_h, scores_w, scores_d};
  for (int64_t l = threadIdx.x; l < L; l += blockDim.x) {
    const int axis = axis_of(l, H, W);
    const int64_t begin = axis_begin(axis, H, W), n = axis_len(axis, H, W, D);
    out[axis][b * n + l - begin] = store<T>(s[l]);
    weights[b * L + l] = acc_t(n) * s[l];
  }
  if (threadIdx.x == 0) {
    logits[b] = store<T>(image_logit(load<acc_t>(cls_bias), sz_axis[0], sz_axis[1], sz_axis[2]));
  }
}

template <typename acc_t>
__device__ acc_t block_max(acc_t v, acc_t* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) red[threadIdx.x] = max(red[threadIdx.x], red[threadIdx.x + stride]);
    __syncthreads();
  }
  const acc_t m = red[0];
  __syncthreads();
  return m;
}

// CAM from the group partials, unnormalised ACAM (stored over the first partial), block maxima.
template <typename T, typename acc_t>
__global__ void acam_max_kernel(acc_t* __restrict__ campart, int64_t groups,
                                const acc_t* __restrict__ weights, Sizes sz, int fusion,
                                T* __restrict__ cam, acc_t* __restrict__ blockmax) {
  __shared__ acc_t red[kThreads];
  const int64_t b = blockIdx.y, H = sz.H, W = sz.W, D = sz.D, V = sz.voxels();
  const acc_t* wts = weights + b * sz.L();
  acc_t m = 0;
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < V;
       v += int64_t(gridDim.x) * blockDim.x) {
    acc_t c = 0;
    for (int64_t g = 0; g < groups; ++g) c += campart[(g * sz.B + b) * V + v];
    cam[b * V + v] = store<T>(c);
    const int64_t d = v % D, w = (v / D) % W, h = v / (W * D);
    const acc_t a = acam_value(c, fusion_weight(wts[h], wts[H + w], wts[H + W + d], fusion));
    campart[b * V + v] = a;
    m = max(m, a);
  }
  m = block_max(m, red);
  if (threadIdx.x == 0) blockmax[b * gridDim.x + blockIdx.x] = m;
}

template <typename T, typename acc_t>
__global__ void acam_normalise_kernel(const acc_t* __restrict__ unnormalised,
                                      const acc_t* __restrict__ blockmax, Sizes sz,
                                      T* __restrict__ acam) {
  __shared__ acc_t red[kThreads];
  const int64_t b = blockIdx.y, V = sz.voxels();
  acc_t m = 0;
  for (int64_t i = threadIdx.x; i < gridDim.x; i += blockDim.x)
    m = max(m, blockmax[b * gridDim.x + i]);
  m = block_max(m, red);
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < V;
       v += int64_t(gridDim.x) * blockDim.x) {
    acam[b * V + v] = store<T>(normalise(unnormalised[b * V + v], m));
  }
}

template <typename T>
int forward_typed(const ForwardArgs& a, cudaStream_t stream) {
  using acc_t = typename AccType<T>::type;
  const Sizes& sz = a.sz;
  if (sz.B == 0) return cudaSuccess;
  const ForwardPlan p = plan_forward(sz, sizeof(acc_t), num_sms());
  acc_t* ws = static_cast<acc_t*>(a.workspace);
  const T* features = static_cast<const T*>(a.features);
  const T* wc = static_cast<const T*>(a.cls_weight);
  const T* wa = static_cast<const T*>(a.att_weight);
  acc_t* pooled = static_cast<acc_t*>(a.pooled);

  const dim3 pool_grid(static_cast<unsigned>(sz.H), static_cast<unsigned>(p.groups),
                       static_cast<unsigned>(sz.B));
  pool_cam_kernel<T, acc_t><<<pool_grid, kThreads, p.pool_smem, stream>>>(
      features, wc, sz, p.group_size, p.tile_rows, ws + p.campart, ws + p.rowpart, ws + p.colpart);

  const int64_t pooled_n = sz.B * sz.L() * sz.K;
  const unsigned fin_blocks =
      static_cast<unsigned>(std::min<int64_t>(ceil_div<int64_t>(pooled_n, kThreads), 65535));
  pool_finalize_kernel<acc_t>
      <<<fin_blocks, kThreads, 0, stream>>>(ws + p.rowpart, ws + p.colpart, sz, pooled);

  scores_kernel<T, acc_t>
      <<<static_cast<unsigned>(sz.B), kThreads, 3 * sz.L() * sizeof(acc_t), stream>>>(
          pooled, wc, static_cast<const T*>(a.cls_bias), wa, sz, static_cast<T*>(a.logits),
          static_cast<T*>(a.scores_h), static_cast<T*>(a.scores_w), static_cast<T*>(a.scores_d),
          ws + p.weights);

  const dim3 map_grid(static_cast<unsigned>(p.max_blocks), static_cast<unsigned>(sz.B));
  acam_max_kernel<T, acc_t>
      <<<map_grid, kThreads, 0, stream>>>(ws + p.campart, p.groups, ws + p.weights, sz, a.fusion,
                                          static_cast<T*>(a.cam), ws + p.blockmax);
  acam_normalise_kernel<T, acc_t><<<map_grid, kThreads, 0, stream>>>(
      ws + p.campart, ws + p.blockmax, sz, static_cast<T*>(a.acam));
  return cudaGetLastError();
}

// Backward ------------------------------------------------------------------------------------

template <typename T, typename acc_t>
__global__ void backward_coeff_kernel(const T* __restrict__ grad_logits,
                                      const acc_t* __restrict__ pooled,
                                      const T* __restrict__ cls_weight,
                                      const T* __restrict__ att_weight, Sizes sz,
                                      acc_t* __restrict__ slice_grad,
                                      acc_t* __restrict__ weight_grad) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t K = sz.K, H = sz.H, W = sz.W, D = sz.D, L = sz.L();
  acc_t* g = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* z = g + L;
  acc_t* s = z + L;
  acc_t* c = s + L;
  acc_t* e = c + L;
  __shared__ acc_t sz_axis[3];
  const int64_t b = blockIdx.x;
  const acc_t* P = pooled + b * L * K;
  sample_softmax(P, cls_weight, att_weight, sz, g, z, s, sz_axis);
  const acc_t gl = load<acc_t>(grad_logits + b);
  for (int64_t l = threadIdx.x; l < L; l += blockDim.x) {
    slice_grad_coeffs(gl, s[l], z[l], sz_axis[axis_of(l, H, W)], c + l, e + l);
  }
  __syncthreads();
  for (int64_t idx = threadIdx.x; idx < K * L; idx += blockDim.x) {
    const int64_t k = idx / L, l = idx % L;
    const int axis = axis_of(l, H, W);
    const acc_t dp =
        c[l] * load<acc_t>(cls_weight + k) + e[l] * load<acc_t>(att_weight + axis * K + k);
    slice_grad[b * K * L + idx] = dp * (acc_t(1) / acc_t(slice_count(axis, H, W, D)));
  }
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    acc_t gw = 0, ga[3] = {0, 0, 0};
    for (int64_t l = 0; l < L; ++l) {
      const acc_t p = P[l * K + k];
      gw += c[l] * p;
      ga[axis_of(l, H, W)] += e[l] * p;
    }
    acc_t* out = weight_grad + b * 4 * K;
    out[k] = gw;
    for (int axis = 0; axis < 3; ++axis) out[(1 + axis) * K + k] = ga[axis];
  }
}

template <typename T, typename acc_t>
__global__ void grad_features_kernel(const acc_t* __restrict__ slice_grad, Sizes sz,
                                     T* __restrict__ grad_features) {
  const int64_t H = sz.H, W = sz.W, D = sz.D, L = sz.L(), V = sz.voxels();
  const int64_t total = sz.B * sz.K * V;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = idx % D, w = (idx / D) % W, h = (idx / (W * D)) % H, bk = idx / V;
    const acc_t* a = slice_grad + bk * L;
    grad_features[idx] = store<T>(a[h] + (a[H + w] + a[H + W + d]));
  }
}

template <typename T, typename acc_t>
__global__ void weight_grad_reduce_kernel(const acc_t* __restrict__ weight_grad,
                                          const T* __restrict__ grad_logits, Sizes sz,
                                          T* __restrict__ grad_cls_weight,
                                          T* __restrict__ grad_cls_bias,
                                          T* __restrict__ grad_att_weight) {
  const int64_t K = sz.K;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j <= 4 * K;
       j += int64_t(gridDim.x) * blockDim.x) {
    acc_t s = 0;
    if (j == 4 * K) {
      for (int64_t b = 0; b < sz.B; ++b) s += load<acc_t>(grad_logits + b);
      grad_cls_bias[0] = store<T>(s);
    } else {
      for (int64_t b = 0; b < sz.B; ++b) s += weight_grad[b * 4 * K + j];
      if (j < K) {
        grad_cls_weight[j] = store<T>(s);
      } else {
        grad_att_weight[j - K] = store<T>(s);
      }
    }
  }
}

template <typename T>
int backward_typed(const BackwardArgs& a, cudaStream_t stream) {
  using acc_t = typename AccType<T>::type;
  const Sizes& sz = a.sz;
  acc_t* slice_grad = static_cast<acc_t*>(a.workspace);
  acc_t* weight_grad = slice_grad + sz.B * sz.K * sz.L();
  const T* go = static_cast<const T*>(a.grad_logits);
  const T* wc = static_cast<const T*>(a.cls_weight);
  const T* wa = static_cast<const T*>(a.att_weight);
  if (sz.B > 0) {
    backward_coeff_kernel<T, acc_t>
        <<<static_cast<unsigned>(sz.B), kThreads, 5 * sz.L() * sizeof(acc_t), stream>>>(
            go, static_cast<const acc_t*>(a.pooled), wc, wa, sz, slice_grad, weight_grad);
    const int64_t total = sz.B * sz.K * sz.voxels();
    const unsigned blocks =
        static_cast<unsigned>(std::min<int64_t>(ceil_div<int64_t>(total, kThreads), 1 << 20));
    grad_features_kernel<T, acc_t>
        <<<blocks, kThreads, 0, stream>>>(slice_grad, sz, static_cast<T*>(a.grad_features));
  }
  const unsigned red_blocks = static_cast<unsigned>(ceil_div<int64_t>(4 * sz.K + 1, kThreads));
  weight_grad_reduce_kernel<T, acc_t><<<red_blocks, kThreads, 0, stream>>>(
      weight_grad, go, sz, static_cast<T*>(a.grad_cls_weight), static_cast<T*>(a.grad_cls_bias),
      static_cast<T*>(a.grad_att_weight));
  return cudaGetLastError();
}

int64_t acc_bytes(ScalarKind kind) { return kind == ScalarKind::Double ? 8 : 4; }

}  // namespace

int64_t forward_max_depth(ScalarKind kind) { return kSmemBytes / acc_bytes(kind) / 3; }

int64_t forward_workspace_bytes(const Sizes& sz, ScalarKind kind) {
  if (sz.B == 0) return 0;
  return plan_forward(sz, acc_bytes(kind), num_sms()).total * acc_bytes(kind);
}

int forward_cuda(const ForwardArgs& args, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (args.kind) {
    case ScalarKind::Float:
      return forward_typed<float>(args, s);
    case ScalarKind::Double:
      return forward_typed<double>(args, s);
    case ScalarKind::Half:
      return forward_typed<__half>(args, s);
    case ScalarKind::BFloat16:
      return forward_typed<__nv_bfloat16>(args, s);
  }
  return cudaErrorInvalidValue;
}

int64_t backward_workspace_bytes(const Sizes& sz, ScalarKind kind) {
  return (sz.B * sz.K * sz.L() + sz.B * 4 * sz.K) * acc_bytes(kind);
}

int backward_cuda(const BackwardArgs& args, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (args.kind) {
    case ScalarKind::Float:
      return backward_typed<float>(args, s);
    case ScalarKind::Double:
      return backward_typed<double>(args, s);
    case ScalarKind::Half:
      return backward_typed<__half>(args, s);
    case ScalarKind::BFloat16:
      return backward_typed<__nv_bfloat16>(args, s);
  }
  return cudaErrorInvalidValue;
}

}  // namespace attention_cam
}  // namespace wsls
