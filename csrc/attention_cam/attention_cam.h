// wsls::attention_cam: the class activation map (CAM) of a 3D classifier refined by attention over
// each axis (ACAM), fused into one pass over the features. Torch-free: included by the CUDA
// kernels.
//
// Forward, for features F (B, K, H, W, D), cls_weight w (K), cls_bias b (1), att_weight a (3, K):
//   cam[b,h,w,d]   = sum_k w[k] F[b,k,h,w,d]                                      (B, H, W, D)
//   pooled[b,l,:]  = mean of F[b,:,...] over slice l of an axis                      (B, L, K)
//                    (L = H + W + D; rows [0,H) H-slices, [H,H+W) W-slices, then D-slices; acc
//                    type)
//   s_axis         = softmax over the slices of the axis of <pooled[b,l,:], a[axis]>   (B, L_axis)
//   z[b,l]         = <pooled[b,l,:], w> (the slice mean of the CAM)
//   logits[b]      = b + mean over the three axes of sum_l s[l] z[l]                  (B)
//   acam[b,h,w,d]  = relu(cam) * fuse(H s_h[h], W s_w[w], D s_d[d]) / per-sample max  (B, H, W, D)
//                    fuse = arithmetic mean (mean) or cube root of the product (geometric)
// Backward (through logits only): gradients of features, cls_weight, cls_bias, att_weight, from
// grad_logits and the saved pooled features (no second read of the features).
#pragma once

#include <cstdint>

#include "../common.h"

namespace wsls {
namespace attention_cam {

struct Sizes {
  int64_t B, K, H, W, D;
  WSLS_HOST_DEVICE int64_t L() const { return H + W + D; }
  WSLS_HOST_DEVICE int64_t voxels() const { return H * W * D; }
};

#if defined(WSLS_WITH_CUDA) || defined(__CUDACC__)
// CUDA launchers (attention_cam_kernel.cu). All pointers are device pointers to contiguous
// tensors; T-typed tensors (features, weights, logits, cam, acam, scores, grad_features) have the
// features' storage type `kind`; pooled and the workspace have the accumulation type (double for
// double features, float otherwise). workspace_bytes() says how much scratch a call needs.
struct ForwardArgs {
  Sizes sz;
  ScalarKind kind;
  int fusion;
  const void* features;
  const void* cls_weight;
  const void* cls_bias;
  const void* att_weight;
  void* logits;
  void* cam;
  void* acam;
  void* scores_h;
  void* scores_w;
  void* scores_d;
  void* pooled;
  void* workspace;
};
// Largest depth D the CUDA forward supports (its tiles keep whole D-rows in shared memory).
int64_t forward_max_depth(ScalarKind kind);
int64_t forward_workspace_bytes(const Sizes& sz, ScalarKind kind);
// Returns a cudaError_t (0 on success).
int forward_cuda(const ForwardArgs& args, void* stream);

struct BackwardArgs {
  Sizes sz;
  ScalarKind kind;
  const void* grad_logits;
  const void* pooled;
  const void* cls_weight;
  const void* att_weight;
  void* grad_features;
  void* grad_cls_weight;
  void* grad_cls_bias;
  void* grad_att_weight;
  void* workspace;
};
int64_t backward_workspace_bytes(const Sizes& sz, ScalarKind kind);
// Returns a cudaError_t (0 on success).
int backward_cuda(const BackwardArgs& args, void* stream);
#endif

}  // namespace attention_cam
}  // namespace wsls
