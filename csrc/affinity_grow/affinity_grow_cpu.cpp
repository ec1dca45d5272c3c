// CPU kernels of affinity_grow, mask_nms, candidate_scores, pack_masks and unpack_masks.
//
// Growth: seeds are grouped (up to 16 mutually affine seeds, which grow over mostly the same rows)
// and the groups handed out one at a time to one worker per thread (an atomic counter: regions
// differ in size, so static chunks would balance badly). A worker floods each seed's region row
// by row: a row (h, w, :) is evaluated only when a region first reaches a neighbouring row (d2 of
// its D voxels to every seed of the group, vectorised along d, one pass bit per voxel, cached for
// the group), and grows by whole runs of passing voxels (fill_row, affinity_grow_math.h). Work
// and memory follow the regions and their borders, not the volume; the scratch (pass bit caches
// and a byte per row) is reset only where it was touched. Connectivity 0 evaluates every row for
// every seed, rows outer so that each row is read once for all seeds. NMS: per-candidate area and
// bounding box, then the greedy pass in score order; the IoU of a kept candidate with each later
// one (in parallel) by popcount over the overlap of their boxes.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <type_traits>
#include <vector>

#include "affinity_grow_glue.h"

namespace wsls {
namespace affinity_grow {
namespace {

// Hot loops run in an AVX2 + POPCNT + BMI build where the CPU has them. Not FMA (unlike
// cpu_isa.h's run_with_best_isa): GCC contracts a*b + c into fused multiply-adds by default, which
// would change d2's rounding away from the reference's and the GPU's.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
inline bool cpu_has_avx2_popcnt() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") &&
                          __builtin_cpu_supports("bmi");
  return has;
}

template <typename F>
__attribute__((target("avx2,popcnt,bmi"), noinline)) void run_avx2_popcnt(const F& f) {
  f();
}
#endif

// f (an always-inline lambda calling always-inline functions) in the best build for this CPU.
template <typename F>
void run_fast(const F& f) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (cpu_has_avx2_popcnt()) {
    run_avx2_popcnt(f);
    return;
  }
#endif
  f();
}

WSLS_ALWAYS_INLINE int lowest_bit(word_t x) { return __builtin_ctzll(x); }

// --- growth ---------------------------------------------------------------------------------

// Pass bits of one row (D voxels from row0, channel stride N) against the seed's features:
// d2 summed over k in order, vectorised along d; bits past D stay zero.
template <typename T, typename acc_t>
WSLS_ALWAYS_INLINE void eval_row(const T* __restrict__ row0, int64_t N, int64_t K, int64_t D,
                                 int64_t Dw, const acc_t* __restrict__ seedf, acc_t bound,
                                 const word_t* __restrict__ mask_row, acc_t* __restrict__ d2,
                                 word_t* __restrict__ pass) {
  {
    const T* __restrict__ e = row0;
    const acc_t s = seedf[0];
    for (int64_t d = 0; d < D; ++d) d2[d] = sq_diff_add(acc_t(0), static_cast<acc_t>(e[d]), s);
  }
  for (int64_t k = 1; k < K; ++k) {
    const T* __restrict__ e = row0 + k * N;
    const acc_t s = seedf[k];
    for (int64_t d = 0; d < D; ++d) d2[d] = sq_diff_add(d2[d], static_cast<acc_t>(e[d]), s);
  }
  for (int64_t j = 0; j < Dw; ++j) {
    const int64_t d0 = j * 64, n = std::min<int64_t>(64, D - d0);
    word_t w = 0;
    for (int64_t b = 0; b < n; ++b) w |= word_t(passes(d2[d0 + b], bound)) << b;
    pass[j] = mask_row != nullptr ? (w & mask_row[j]) : w;
  }
}

template <typename T>
struct GrowProblem {
  using acc_t = at::opmath_type<T>;
  const T* emb;          // (K, H, W, D)
  const int64_t* seeds;  // (S, 3)
  const word_t* mask;    // packed (H, W, Dw) or nullptr
  word_t* out;           // packed (S, H, W, Dw)
  Sizes sz;
  int connectivity;
  acc_t bound;
};

// Seeds are grown in groups of up to kGroup mutually affine seeds (each within the threshold of
// the group's first seed): they grow over mostly the same rows, and a row is evaluated for the
// whole group at once, so that its K x D embeddings come from memory once per group instead of
// once per seed (the growth is memory-bound: reading a row costs several times testing it).
constexpr int kGroup = 16;
constexpr int64_t kGroupScan = 4096;  // seeds scanned for a group's members

template <typename T>
struct SeedTable {
  using acc_t = at::opmath_type<T>;
  std::vector<acc_t> features;  // S x K
  std::vector<uint8_t> valid;   // in the mask; else an empty candidate

  explicit SeedTable(const GrowProblem<T>& pb) : features(pb.sz.S * pb.sz.K), valid(pb.sz.S) {
    const Sizes& sz = pb.sz;
    for (int64_t s = 0; s < sz.S; ++s) {
      const int64_t r0 = pb.seeds[3 * s] * sz.W + pb.seeds[3 * s + 1], d = pb.seeds[3 * s + 2];
      valid[s] = pb.mask == nullptr || test_bit(pb.mask + r0 * sz.Dw(), d);
      for (int64_t k = 0; k < sz.K; ++k)
        features[s * sz.K + k] = static_cast<acc_t>(pb.emb[k * sz.voxels() + r0 * sz.D + d]);
    }
  }
  const acc_t* of(int64_t s, int64_t K) const { return features.data() + s * K; }
};

// Groups in seed order: each valid unassigned seed starts a group and takes the next unassigned
// valid seeds within its threshold; an invalid seed is a group of its own (an empty candidate).
template <typename T>
std::vector<std::vector<int64_t>> group_seeds(const GrowProblem<T>& pb, const SeedTable<T>& tab) {
  using acc_t = at::opmath_type<T>;
  const int64_t S = pb.sz.S, K = pb.sz.K;
  std::vector<std::vector<int64_t>> groups;
  std::vector<uint8_t> taken(S, 0);
  for (int64_t s = 0; s < S; ++s) {
    if (taken[s]) continue;
    taken[s] = 1;
    groups.push_back({s});
    if (!tab.valid[s]) continue;
    const acc_t* f = tab.of(s, K);
    for (int64_t t = s + 1; t < std::min(S, s + kGroupScan) && groups.back().size() < kGroup; ++t) {
      if (taken[t] || !tab.valid[t]) continue;
      const acc_t* g = tab.of(t, K);
      acc_t d2 = 0;
      for (int64_t k = 0; k < K; ++k) d2 = sq_diff_add(d2, g[k], f[k]);
      if (passes(d2, pb.bound)) {
        taken[t] = 1;
        groups.back().push_back(t);
      }
    }
  }
  return groups;
}

// One worker's scratch, reused for every group it grows.
template <typename T>
struct Grower {
  using acc_t = at::opmath_type<T>;
  static constexpr uint8_t kEvaluated = 1, kQueued = 2;
  const GrowProblem<T>& pb;
  const SeedTable<T>& tab;
  std::vector<uint8_t> state;      // per row: evaluated for the group; queued for the current seed
  std::unique_ptr<word_t[]> pass;  // kGroup x (rows x Dw), valid where kEvaluated: no fill
  std::vector<int64_t> touched, stack;
  std::vector<acc_t> d2;
  const int64_t* members = nullptr;
  int n_members = 0;

  Grower(const GrowProblem<T>& problem, const SeedTable<T>& table)
      : pb(problem),
        tab(table),
        state(problem.sz.rows(), 0),
        pass(new word_t[std::min<int64_t>(kGroup, problem.sz.S) * problem.sz.words()]),
        d2(problem.sz.D) {}

  // Row r's pass bits for member g; evaluated for every member on first use.
  WSLS_ALWAYS_INLINE const word_t* pass_row(int g, int64_t r) {
    const Sizes& sz = pb.sz;
    const int64_t Dw = sz.Dw();
    if (!(state[r] & kEvaluated)) {
      const word_t* mask_row = pb.mask != nullptr ? pb.mask + r * Dw : nullptr;
      for (int m = 0; m < n_members; ++m) {
        eval_row<T, acc_t>(pb.emb + r * sz.D, sz.voxels(), sz.K, sz.D, Dw, tab.of(members[m], sz.K),
                           pb.bound, mask_row, d2.data(), pass.get() + m * sz.words() + r * Dw);
      }
      state[r] |= kEvaluated;
      touched.push_back(r);
    }
    return pass.get() + g * sz.words() + r * Dw;
  }

  // The region of member g: its seed's run, then flooded row by row.
  WSLS_ALWAYS_INLINE void grow(int g) {
    const Sizes& sz = pb.sz;
    const int64_t Dw = sz.Dw(), W = sz.W, s = members[g];
    word_t* region = pb.out + s * sz.words();
    std::fill(region, region + sz.words(), word_t(0));
    if (!tab.valid[s]) return;  // seed outside the mask: empty candidate
    const int64_t h = pb.seeds[3 * s], w = pb.seeds[3 * s + 1], d = pb.seeds[3 * s + 2];
    const int64_t r0 = h * W + w;
    const word_t* p0 = pass_row(g, r0);
    if (test_bit(p0, d)) {
      fill_row(BitSource{d >> 6, word_t(1) << (d & 63)}, p0, region + r0 * Dw, Dw);
      stack.push_back(r0);
      state[r0] |= kQueued;
    }
    const bool dilate = dilates(pb.connectivity);
    const int n_nbrs = num_neighbour_rows(pb.connectivity);
    while (!stack.empty()) {
      const int64_t r = stack.back();
      stack.pop_back();
      state[r] &= ~kQueued;
      const int64_t rh = r / W, rw = r % W;
      const RowSource src{region + r * Dw, Dw, dilate};
      for (int i = 0; i < n_nbrs; ++i) {
        int dh, dw;
        neighbour_row(pb.connectivity, i, &dh, &dw);
        const int64_t nh = rh + dh, nw = rw + dw;
        if (nh < 0 || nh >= sz.H || nw < 0 || nw >= W) continue;
        const int64_t n = nh * W + nw;
        if (fill_row(src, pass_row(g, n), region + n * Dw, Dw) && !(state[n] & kQueued)) {
          state[n] |= kQueued;
          stack.push_back(n);
        }
      }
    }
  }

  WSLS_ALWAYS_INLINE void grow_group(const std::vector<int64_t>& group) {
    members = group.data();
    n_members = static_cast<int>(group.size());
    for (int g = 0; g < n_members; ++g) grow(g);
    for (const int64_t r : touched) state[r] = 0;
    touched.clear();
  }
};

// Connectivity 0: every row for every seed. Rows outer (in parallel), seeds inner, so that a
// row's K x D embeddings are read from memory once for all seeds.
template <typename T>
void global_impl(const GrowProblem<T>& pb) {
  using acc_t = at::opmath_type<T>;
  const Sizes& sz = pb.sz;
  const int64_t S = sz.S, K = sz.K, Dw = sz.Dw();
  const SeedTable<T> tab(pb);
  at::parallel_for(0, sz.rows(), 16, [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> d2(sz.D);
    run_fast([&]() WSLS_INLINE_LAMBDA {
      for (int64_t r = r0; r < r1; ++r) {
        const word_t* mask_row = pb.mask != nullptr ? pb.mask + r * Dw : nullptr;
        for (int64_t s = 0; s < S; ++s) {
          word_t* dst = pb.out + s * sz.words() + r * Dw;
          if (!tab.valid[s]) {
            for (int64_t j = 0; j < Dw; ++j) dst[j] = 0;
            continue;
          }
          eval_row<T, acc_t>(pb.emb + r * sz.D, sz.voxels(), K, sz.D, Dw, tab.of(s, K), pb.bound,
                             mask_row, d2.data(), dst);
        }
      }
    });
  });
}

template <typename T>
void grow_impl(const GrowProblem<T>& pb) {
  const int64_t S = pb.sz.S;
  if (S == 0) return;
  if (pb.connectivity == 0) {
    global_impl(pb);
    return;
  }
  const SeedTable<T> tab(pb);
  const std::vector<std::vector<int64_t>> groups = group_seeds(pb, tab);
  const int64_t n_groups = static_cast<int64_t>(groups.size());
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), n_groups);
  at::parallel_for(0, workers, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t wk = w0; wk < w1; ++wk) {
      Grower<T> grower(pb, tab);
      for (int64_t i = next.fetch_add(1); i < n_groups; i = next.fetch_add(1)) {
        run_fast([&]() WSLS_INLINE_LAMBDA { grower.grow_group(groups[i]); });
      }
    }
  });
}

template <typename T>
bool all_finite(const T* x, int64_t n) {
  using acc_t = at::opmath_type<T>;
  std::atomic<bool> bad{false};
  at::parallel_for(0, n, 1 << 16, [&](int64_t b, int64_t e) {
    int any = 0;
    run_fast([&]() WSLS_INLINE_LAMBDA {
      for (int64_t i = b; i < e; ++i) any |= !is_finite_value(static_cast<acc_t>(x[i]));
    });
    if (any) bad = true;
  });
  return !bad;
}

// bool (S, H, W, D) -> packed (S, H, W, Dw); S * H * W rows.
void pack_rows(const bool* src, word_t* dst, int64_t rows, int64_t D) {
  const int64_t Dw = (D + 63) / 64;
  at::parallel_for(0, rows, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t j = 0; j < Dw; ++j) dst[r * Dw + j] = pack_word(src + r * D, D, j);
    }
  });
}

template <typename T>
void grow_typed(const at::Tensor& emb, const at::Tensor& seeds, const word_t* mask, at::Tensor& out,
                const Sizes& sz, int connectivity, double threshold) {
  const T* e = emb.data_ptr<T>();
  TORCH_CHECK(all_finite(e, emb.numel()), kNonFinite);
  const GrowProblem<T> pb{e,
                          seeds.data_ptr<int64_t>(),
                          mask,
                          mutable_words_of(out),
                          sz,
                          connectivity,
                          bound_as<at::opmath_type<T>>(d2_bound(threshold))};
  grow_impl(pb);
}

at::Tensor affinity_grow_cpu(const at::Tensor& embeddings, const at::Tensor& seeds,
                             double threshold, int64_t connectivity,
                             const c10::optional<at::Tensor>& mask) {
  const Sizes sz = check_grow_inputs(embeddings, seeds, threshold, connectivity, mask);
  check_seeds_in_volume(seeds, sz);
  const at::Tensor emb = embeddings.contiguous();
  const at::Tensor sd = seeds.contiguous();
  at::Tensor out = at::empty({sz.S, sz.H, sz.W, sz.Dw()}, seeds.options());
  at::Tensor mask_words;
  if (mask.has_value()) {
    const at::Tensor m = mask->contiguous();
    mask_words = at::empty({sz.H, sz.W, sz.Dw()}, seeds.options());
    pack_rows(m.data_ptr<bool>(), mutable_words_of(mask_words), sz.rows(), sz.D);
  }
  const word_t* mask_ptr = mask.has_value() ? words_of(mask_words) : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, emb.scalar_type(), "affinity_grow", [&] {
        grow_typed<scalar_t>(emb, sd, mask_ptr, out, sz, static_cast<int>(connectivity), threshold);
      });
  return out;
}

// --- NMS, scores, packing -------------------------------------------------------------------

struct CandidateStats {
  std::vector<int64_t> area;
  std::vector<Box> box;
};

CandidateStats candidate_stats(const word_t* masks, const Sizes& sz) {
  CandidateStats st{std::vector<int64_t>(sz.S, 0), std::vector<Box>(sz.S, empty_box())};
  const int64_t Dw = sz.Dw();
  at::parallel_for(0, sz.S, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      run_fast([&]() WSLS_INLINE_LAMBDA {
        const word_t* m = masks + s * sz.words();
        int64_t area = 0;
        Box box = empty_box();
        for (int64_t h = 0; h < sz.H; ++h) {
          for (int64_t w = 0; w < sz.W; ++w) {
            const word_t* row = m + (h * sz.W + w) * Dw;
            for (int64_t j = 0; j < Dw; ++j) {
              if (row[j] == 0) continue;
              area += popcount(row[j]);
              box = box_union(box, box_of_word(h, w, j));
            }
          }
        }
        st.area[s] = area;
        st.box[s] = box;
      });
    }
  });
  return st;
}

// |a & b| over the box ov.
WSLS_ALWAYS_INLINE int64_t intersection(const word_t* a, const word_t* b, const Box& ov,
                                        const Sizes& sz) {
  const int64_t Dw = sz.Dw();
  int64_t n = 0;
  for (int64_t h = ov.h0; h <= ov.h1; ++h) {
    for (int64_t w = ov.w0; w <= ov.w1; ++w) {
      const int64_t off = (h * sz.W + w) * Dw;
      for (int64_t j = ov.j0; j <= ov.j1; ++j) n += popcount(a[off + j] & b[off + j]);
    }
  }
  return n;
}

at::Tensor mask_nms_cpu(const at::Tensor& masks, const at::Tensor& scores, double iou_threshold) {
  const Sizes sz = check_nms_inputs(masks, scores, iou_threshold);
  {
    const at::Tensor sd = scores.to(at::kDouble).contiguous();
    const double* v = sd.data_ptr<double>();
    for (int64_t i = 0; i < sz.S; ++i) TORCH_CHECK(!std::isnan(v[i]), kNanScores);
  }
  const at::Tensor m = masks.contiguous();
  const word_t* words = words_of(m);
  const CandidateStats st = candidate_stats(words, sz);
  const at::Tensor order_t = nms_order(scores).contiguous();
  const int64_t* order = order_t.data_ptr<int64_t>();
  std::vector<uint8_t> suppressed(sz.S, 0);
  std::vector<int64_t> kept;
  for (int64_t t = 0; t < sz.S; ++t) {
    const int64_t i = order[t];
    if (suppressed[i]) continue;
    kept.push_back(i);
    if (st.area[i] == 0 || iou_threshold >= 1.0) continue;  // no IoU can exceed tau
    at::parallel_for(t + 1, sz.S, 1, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t j = order[u];
        Box ov;
        if (suppressed[j] || !box_overlap(st.box[i], st.box[j], &ov)) continue;
        int64_t inter = 0;
        run_fast([&]() WSLS_INLINE_LAMBDA {
          inter = intersection(words + i * sz.words(), words + j * sz.words(), ov, sz);
        });
        if (iou_exceeds(inter, st.area[i], st.area[j], iou_threshold)) suppressed[j] = 1;
      }
    });
  }
  at::Tensor out =
      at::empty({static_cast<int64_t>(kept.size())}, scores.options().dtype(at::kLong));
  std::copy(kept.begin(), kept.end(), out.data_ptr<int64_t>());
  return out;
}

// Mean of acam over each candidate's set bits, summed in float64.
template <typename T>
void scores_typed(const word_t* words, const at::Tensor& acam, at::Tensor& out, const Sizes& sz) {
  const T* v = acam.data_ptr<T>();
  T* o = out.data_ptr<T>();
  const int64_t Dw = sz.Dw();
  at::parallel_for(0, sz.S, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      double sum = 0;
      int64_t count = 0;
      run_fast([&]() WSLS_INLINE_LAMBDA {
        const word_t* c = words + s * sz.words();
        for (int64_t r = 0; r < sz.rows(); ++r) {
          for (int64_t j = 0; j < Dw; ++j) {
            word_t x = row_word(c + r * Dw, j, Dw, sz.D);
            if (x == 0) continue;
            count += popcount(x);
            const T* base = v + r * sz.D + j * 64;
            for (; x != 0; x &= x - 1) sum += static_cast<double>(base[lowest_bit(x)]);
          }
        }
      });
      o[s] = static_cast<T>(mean_or_zero(sum, count));
    }
  });
}

at::Tensor candidate_scores_cpu(const at::Tensor& masks, const at::Tensor& acam) {
  const Sizes sz = check_scores_inputs(masks, acam);
  const at::Tensor m = masks.contiguous();
  const at::Tensor a = acam.contiguous();
  at::Tensor out = at::empty({sz.S}, acam.options());
  const word_t* words = words_of(m);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "candidate_scores",
                                  [&] { scores_typed<scalar_t>(words, a, out, sz); });
  return out;
}

at::Tensor pack_masks_cpu(const at::Tensor& masks) {
  const Sizes sz = check_pack_inputs(masks);
  const at::Tensor m = masks.contiguous();
  at::Tensor out = at::empty({sz.S, sz.H, sz.W, sz.Dw()}, masks.options().dtype(at::kLong));
  pack_rows(m.data_ptr<bool>(), mutable_words_of(out), sz.S * sz.rows(), sz.D);
  return out;
}

at::Tensor unpack_masks_cpu(const at::Tensor& masks, int64_t depth) {
  const Sizes sz = check_unpack_inputs(masks, depth);
  const at::Tensor m = masks.contiguous();
  at::Tensor out = at::empty({sz.S, sz.H, sz.W, sz.D}, masks.options().dtype(at::kBool));
  const word_t* words = words_of(m);
  bool* o = out.data_ptr<bool>();
  const int64_t D = sz.D, Dw = sz.Dw();
  at::parallel_for(0, sz.S * sz.rows(), 256, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t d = 0; d < D; ++d) o[r * D + d] = test_bit(words + r * Dw, d);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(wsls, CPU, m) {
  m.impl("affinity_grow", &affinity_grow_cpu);
  m.impl("mask_nms", &mask_nms_cpu);
  m.impl("candidate_scores", &candidate_scores_cpu);
  m.impl("pack_masks", &pack_masks_cpu);
  m.impl("unpack_masks", &unpack_masks_cpu);
}

}  // namespace affinity_grow
}  // namespace wsls
