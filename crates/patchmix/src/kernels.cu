// patchmix CUDA kernels, compiled at run time with NVRTC (see cuda.rs). Self-contained: no CUDA
// headers are included, so NVRTC needs no include path on the GPU machine. bf16 and f16 are kept
// as raw 16-bit words and converted to f32 by hand (bf16) or with PTX cvt (f16); all maths is f32.
//
// Layouts (all row-major, contiguous):
//   fg, bg, grad, out : (rows = B*N, C)     ratio, d_ratio : (rows)
//   saliency          : (B, H, W)           ratio out      : (B, Hp*Wp)
// Mixing kernels: one warp per row (b, n), lanes stride over the row, so the backward's
// per-row reduction is a warp shuffle and no atomics are needed; grid-stride over rows.

typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

struct bf16_t { u16 x; };
struct f16_t { u16 x; };

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16_t v) { return __uint_as_float(((u32)v.x) << 16); }
__device__ __forceinline__ float to_f(f16_t v) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.x));
  return f;
}

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16_t from_f<bf16_t>(float v) {
  // Round to nearest even, NaN stays NaN: the same rule as the `half` crate on the CPU.
  u32 u = __float_as_uint(v);
  bf16_t r;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    r.x = (u16)((u >> 16) | 0x40u);
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
    r.x = (u16)(u >> 16);
  }
  return r;
}
template <> __device__ __forceinline__ f16_t from_f<f16_t>(float v) {
  f16_t r;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.x) : "f"(v));
  return r;
}

// V elements of T per access: V*sizeof(T) == 16 uses one 128-bit load/store (the caller checked
// alignment and C % V == 0); V == 1 is the scalar fallback.
template <typename T, int V> struct Pack { T v[V]; };

template <typename T, int V>
__device__ __forceinline__ void load(const T* p, float (&out)[V]) {
  Pack<T, V> pk;
  if (V * sizeof(T) == 16) {
    *reinterpret_cast<uint4*>(&pk) = __ldg(reinterpret_cast<const uint4*>(p));
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) pk.v[k] = p[k];
  }
#pragma unroll
  for (int k = 0; k < V; ++k) out[k] = to_f(pk.v[k]);
}

template <typename T, int V>
__device__ __forceinline__ void store(T* p, const float (&in)[V]) {
  Pack<T, V> pk;
#pragma unroll
  for (int k = 0; k < V; ++k) pk.v[k] = from_f<T>(in[k]);
  if (V * sizeof(T) == 16) {
    *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(&pk);
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) p[k] = pk.v[k];
  }
}

// out = r * fg + (1 - r) * bg, r broadcast over the C channels of its row.
template <typename T, int V>
__device__ void mix_fwd(const T* __restrict__ fg, const T* __restrict__ bg,
                        const T* __restrict__ ratio, T* __restrict__ out, u32 rows, u32 c) {
  const u32 lane = threadIdx.x & 31u;
  const u32 warps = blockDim.x >> 5;
  const u32 nvec = c / V;
  for (u32 row = blockIdx.x * warps + (threadIdx.x >> 5); row < rows; row += gridDim.x * warps) {
    const float r = to_f(ratio[row]);
    const float q = 1.0f - r;
    const u64 base = (u64)row * c;
    for (u32 j = lane; j < nvec; j += 32) {
      float f[V], b[V], o[V];
      load<T, V>(fg + base + (u64)j * V, f);
      load<T, V>(bg + base + (u64)j * V, b);
#pragma unroll
      for (int k = 0; k < V; ++k) o[k] = r * f[k] + q * b[k];
      store<T, V>(out + base + (u64)j * V, o);
    }
  }
}

// One pass for all three gradients: d_fg = r g, d_bg = (1 - r) g, d_r = sum_c (fg - bg) g.
// packed = [d_fg (rows*C) | d_bg (rows*C) | d_r (rows)].
template <typename T, int V>
__device__ void mix_bwd(const T* __restrict__ fg, const T* __restrict__ bg,
                        const T* __restrict__ grad, const T* __restrict__ ratio,
                        T* __restrict__ packed, u32 rows, u32 c) {
  const u32 lane = threadIdx.x & 31u;
  const u32 warps = blockDim.x >> 5;
  const u32 nvec = c / V;
  const u64 n = (u64)rows * c;
  T* d_fg = packed;
  T* d_bg = packed + n;
  T* d_r = packed + 2 * n;
  for (u32 row = blockIdx.x * warps + (threadIdx.x >> 5); row < rows; row += gridDim.x * warps) {
    const float r = to_f(ratio[row]);
    const float q = 1.0f - r;
    const u64 base = (u64)row * c;
    float acc = 0.0f;
    for (u32 j = lane; j < nvec; j += 32) {
      float f[V], b[V], g[V], da[V], db[V];
      load<T, V>(fg + base + (u64)j * V, f);
      load<T, V>(bg + base + (u64)j * V, b);
      load<T, V>(grad + base + (u64)j * V, g);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        da[k] = r * g[k];
        db[k] = q * g[k];
        acc += (f[k] - b[k]) * g[k];
      }
      store<T, V>(d_fg + base + (u64)j * V, da);
      store<T, V>(d_bg + base + (u64)j * V, db);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) d_r[row] = from_f<T>(acc);
  }
}

// Counter-based noise, identical to noise.rs.
__device__ __forceinline__ u64 mix64(u64 z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
__device__ __forceinline__ u64 sample_key(u64 seed, u32 stream, u32 b) {
  return mix64(mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ (u64)stream) ^ (u64)b);
}
__device__ __forceinline__ float uniform_at(u64 key, u32 y, u32 x) {
  u64 bits = mix64(key ^ (((u64)y << 32) | (u64)x));
  return (float)(bits >> 40) * (1.0f / 16777216.0f);
}

// One block per sample. Shared memory: 2 * np floats (pooled scores of both views).
// Steps: avg-pool(s + amp*(2u-1)) per patch (one warp per patch), per-view min/max, map
// s -> floor + (1-floor) * (s - min) / (max - min) (0 when max == min), max over views, min alpha.
template <typename T>
__device__ void ratio_kernel(const T* __restrict__ s_fg, const T* __restrict__ s_bg,
                             T* __restrict__ out, u32 h, u32 w, u32 p, u32 wp, u32 np, u64 seed,
                             float amp, float floor_, float alpha) {
  extern __shared__ float pooled[];
  __shared__ float lo[2], hi[2];
  const u32 b = blockIdx.x;
  const u32 lane = threadIdx.x & 31u;
  const u32 warp = threadIdx.x >> 5;
  const u32 warps = blockDim.x >> 5;
  const u64 key0 = sample_key(seed, 0u, b);
  const u64 key1 = sample_key(seed, 1u, b);
  const float inv_area = 1.0f / (float)(p * p);
  for (u32 t = warp; t < 2 * np; t += warps) {
    const u32 view = t / np;
    const u32 q = t - view * np;
    const u32 y0 = (q / wp) * p, x0 = (q % wp) * p;
    const T* s = (view == 0 ? s_fg : s_bg) + (u64)b * h * w;
    const u64 key = view == 0 ? key0 : key1;
    float sum = 0.0f;
    for (u32 i = lane; i < p * p; i += 32) {
      const u32 y = y0 + i / p, x = x0 + i % p;
      sum += to_f(s[(u64)y * w + x]) + amp * (2.0f * uniform_at(key, y, x) - 1.0f);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) pooled[t] = sum * inv_area;
  }
  __syncthreads();
  if (warp < 2) {
    float mn = 3.4e38f, mx = -3.4e38f;
    for (u32 q = lane; q < np; q += 32) {
      const float v = pooled[warp * np + q];
      mn = fminf(mn, v);
      mx = fmaxf(mx, v);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, o));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    }
    if (lane == 0) { lo[warp] = mn; hi[warp] = mx; }
  }
  __syncthreads();
  const float r0 = hi[0] - lo[0], r1 = hi[1] - lo[1];
  for (u32 q = threadIdx.x; q < np; q += blockDim.x) {
    const float a = r0 > 0.0f ? (pooled[q] - lo[0]) / r0 : 0.0f;
    const float c = r1 > 0.0f ? (pooled[np + q] - lo[1]) / r1 : 0.0f;
    const float m = fmaxf(floor_ + (1.0f - floor_) * a, floor_ + (1.0f - floor_) * c);
    out[(u64)b * np + q] = from_f<T>(fminf(alpha, m));
  }
}

#define MIX_ENTRY(NAME, T, V)                                                                   \
  extern "C" __global__ void patchmix_fwd_##NAME(const T* fg, const T* bg, const T* r, T* out, \
                                                 u32 rows, u32 c) {                             \
    mix_fwd<T, V>(fg, bg, r, out, rows, c);                                                     \
  }                                                                                             \
  extern "C" __global__ void patchmix_bwd_##NAME(const T* fg, const T* bg, const T* g,         \
                                                 const T* r, T* packed, u32 rows, u32 c) {      \
    mix_bwd<T, V>(fg, bg, g, r, packed, rows, c);                                               \
  }

MIX_ENTRY(vec_f32, float, 4)
MIX_ENTRY(vec_bf16, bf16_t, 8)
MIX_ENTRY(vec_f16, f16_t, 8)
MIX_ENTRY(scalar_f32, float, 1)
MIX_ENTRY(scalar_bf16, bf16_t, 1)
MIX_ENTRY(scalar_f16, f16_t, 1)

#define RATIO_ENTRY(NAME, T)                                                                   \
  extern "C" __global__ void patchmix_ratio_##NAME(const T* s_fg, const T* s_bg, T* out, u32 h, \
                                                   u32 w, u32 p, u32 wp, u32 np, u64 seed,      \
                                                   float amp, float floor_, float alpha) {      \
    ratio_kernel<T>(s_fg, s_bg, out, h, w, p, wp, np, seed, amp, floor_, alpha);                \
  }

RATIO_ENTRY(f32, float)
RATIO_ENTRY(bf16, bf16_t)
RATIO_ENTRY(f16, f16_t)
