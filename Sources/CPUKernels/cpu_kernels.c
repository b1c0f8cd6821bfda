// Integer dot products for the CPU decode mat-vec, as llama.cpp's ggml-cpu does them: the activation
// row is quantized once to 8-bit blocks, each weight block is multiplied with integer SIMD, and the
// per-block integer sums are scaled in float. Every path (scalar, AVX2, AVX512-VNNI) forms the same
// integer lane sums (4 consecutive elements each, 8 lanes per block) and does the same float
// operations in the same order, so results are bit-identical whichever path the CPU takes.
#include "CPUKernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPUK_X86 1
#endif

// No fused multiply-adds: the scalar path must round exactly as the SIMD paths do.
#pragma clang fp contract(off)

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

// IEEE half -> float, exact (ggml's portable conversion).
static inline float h2f(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normalized = u2f((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = u2f((two_w >> 17) | (126u << 23)) - 0.5f;
    return u2f(sign | (two_w < (1u << 27) ? f2u(denormalized) : f2u(normalized)));
}

// float -> IEEE half, round to nearest even (as Swift's Float16(x)).
static inline uint16_t f2h(float f) {
    float base = (__builtin_fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = f2u(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = u2f((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f2u(base);
    const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

void cpuk_quantize_row_q8(const float *x, cpuk_block_q8 *y, int64_t count) {
    for (int64_t b = 0; b < count / 32; b++) {
        const float *xs = x + 32 * b;
        float amax = 0;
        for (int i = 0; i < 32; i++) {
            const float a = __builtin_fabsf(xs[i]);
            amax = a > amax ? a : amax;
        }
        const float d = amax / 127, id = amax != 0 ? 127 / amax : 0;
        int32_t sum = 0;
        for (int i = 0; i < 32; i++) {
            // Round to nearest even in the default rounding mode (|v| <= 127 < 2^22).
            const float v = xs[i] * id;
            const float r = (v + 12582912.0f) - 12582912.0f;
            y[b].qs[i] = (int8_t)(int)r;
            sum += (int)r;
        }
        y[b].d = h2f(f2h(d));
        y[b].ds = y[b].d * (float)sum;
        y[b].sum = sum;
    }
}

void cpuk_quantize_row_q8k(const float *x, cpuk_block_q8k *y, int64_t count) {
    for (int64_t b = 0; b < count / 256; b++) {
        const float *xs = x + 256 * b;
        float amax = 0, vmax = 0; // the value of largest magnitude, sign kept (the first such)
        for (int i = 0; i < 256; i++) {
            const float a = __builtin_fabsf(xs[i]);
            if (a > amax) { amax = a; vmax = xs[i]; }
        }
        if (amax == 0) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -127.0f / vmax;
        for (int i = 0; i < 256; i++) {
            const float v = iscale * xs[i];
            const float r = (v + 12582912.0f) - 12582912.0f;
            const int q = (int)r;
            y[b].qs[i] = (int8_t)(q < 127 ? q : 127);
        }
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += y[b].qs[16 * g + i];
            y[b].bsums[g] = (int16_t)sum;
        }
        y[b].d = 1 / iscale;
    }
}

int cpuk_activation_block(int type) {
    switch (type) {
    case CPUK_Q4_0: case CPUK_Q4_1: case CPUK_Q5_0: case CPUK_Q8_0: return 32;
    case CPUK_Q4_K: case CPUK_Q5_K: case CPUK_Q6_K: return 256;
    default: return 0;
    }
}

// ---- shared float epilogue --------------------------------------------------------------------

// acc[l] += d · lane[l] for 8 lanes; then ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)) + extra.
// Two accumulator sets (even blocks, odd blocks) to break the add chain: a = acc0 + acc1 lane-wise.
static inline float finish8(const float acc[2][8], float extra) {
    float a[8];
    for (int l = 0; l < 8; l++) a[l] = acc[0][l] + acc[1][l];
    const float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
    return ((t0 + t2) + (t1 + t3)) + extra;
}

// Q4_1's min term Σ_b m_b·(dx_b·Σq_b) is kept in 16 lanes, block b in lane b mod 16 (one FMA
// each, in block order), then summed as a fixed tree. That is the order a 512-bit FMA over 16
// blocks at a time gives, so the batch kernel forms the same float as the decode kernels.
static inline float sum16(const float e[16]) {
    float s8[8], s4[4];
    for (int l = 0; l < 8; l++) s8[l] = e[l] + e[l + 8];
    for (int l = 0; l < 4; l++) s4[l] = s8[l] + s8[l + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

// ---- scalar -----------------------------------------------------------------------------------

static inline void lanes_scalar(float acc[8], const int8_t *w, const int8_t *x, float d) {
    for (int l = 0; l < 8; l++) {
        int32_t s = 0;
        for (int k = 0; k < 4; k++) s += (int32_t)w[4 * l + k] * (int32_t)x[4 * l + k];
        acc[l] = __builtin_fmaf(d, (float)s, acc[l]); // one rounding, as the SIMD paths' FMA
    }
}

static float dot_q4_1_scalar(const uint8_t *w, const void *xv, int64_t nb) {
    const cpuk_block_q8 *x = (const cpuk_block_q8 *)xv;
    float acc[2][8] = {{0}}, ext[16] = {0};
    for (int64_t b = 0; b < nb; b++, w += 20) {
        int8_t q[32];
        for (int j = 0; j < 16; j++) { q[j] = (int8_t)(w[4 + j] & 15); q[j + 16] = (int8_t)(w[4 + j] >> 4); }
        lanes_scalar(acc[b & 1], q, x[b].qs, h2f(ld16(w)) * x[b].d);
        ext[b & 15] = __builtin_fmaf(h2f(ld16(w + 2)), x[b].ds, ext[b & 15]);
    }
    return finish8(acc, sum16(ext));
}

static float dot_q4_0_scalar(const uint8_t *w, const void *xv, int64_t nb) {
    const cpuk_block_q8 *x = (const cpuk_block_q8 *)xv;
    float acc[2][8] = {{0}};
    for (int64_t b = 0; b < nb; b++, w += 18) {
        int8_t q[32];
        for (int j = 0; j < 16; j++) { q[j] = (int8_t)((w[2 + j] & 15) - 8); q[j + 16] = (int8_t)((w[2 + j] >> 4) - 8); }
        lanes_scalar(acc[b & 1], q, x[b].qs, h2f(ld16(w)) * x[b].d);
    }
    return finish8(acc, 0.0f);
}

static float dot_q5_0_scalar(const uint8_t *w, const void *xv, int64_t nb) {
    const cpuk_block_q8 *x = (const cpuk_block_q8 *)xv;
    float acc[2][8] = {{0}};
    for (int64_t b = 0; b < nb; b++, w += 22) {
        uint32_t qh; memcpy(&qh, w + 2, 4);
        int8_t q[32];
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(((w[6 + j] & 15) | (((qh >> j) & 1) << 4)) - 16);
            q[j + 16] = (int8_t)(((w[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
        }
        lanes_scalar(acc[b & 1], q, x[b].qs, h2f(ld16(w)) * x[b].d);
    }
    return finish8(acc, 0.0f);
}

static float dot_q8_0_scalar(const uint8_t *w, const void *xv, int64_t nb) {
    const cpuk_block_q8 *x = (const cpuk_block_q8 *)xv;
    float acc[2][8] = {{0}};
    for (int64_t b = 0; b < nb; b++, w += 34) {
        lanes_scalar(acc[b & 1], (const int8_t *)(w + 2), x[b].qs, h2f(ld16(w)) * x[b].d);
    }
    return finish8(acc, 0.0f);
}

// ---- K-quants ---------------------------------------------------------------------------------
// A super-block of 256 against one Q8_K block. Everything inside a super-block is an exact integer
// (sub-block sums times their 6-bit scales, the mins times `bsums`), so the SIMD paths only have to
// form the same integers; the float work is two products per super-block, in this order.

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
static inline void k_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Σ_j m_j · (Σx over sub-block j) for the eight 32-value sub-blocks of a Q4_K/Q5_K block.
static inline int32_t k_min_sum(const uint8_t *scales, const int16_t *bsums) {
    int32_t summ = 0;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k_scale_min(j, scales, &sc, &m);
        summ += m * (bsums[2 * j] + bsums[2 * j + 1]);
    }
    return summ;
}

// Q4_K (144 bytes: half d, half dmin, u8 scales[12], u8 qs[128]) and Q5_K (176 bytes: qh[32] before
// qs): x = d·sc·q − dmin·m per 32-value sub-block.
static inline float dot_q45_K_scalar(const uint8_t *w, const void *xv, int64_t nb, int five) {
    const cpuk_block_q8k *x = (const cpuk_block_q8k *)xv;
    const int size = five ? 176 : 144;
    float acc = 0, accm = 0;
    for (int64_t b = 0; b < nb; b++, w += size) {
        const uint8_t *scales = w + 4, *qh = w + 16, *qs = w + (five ? 48 : 16);
        const int8_t *xq = x[b].qs;
        int32_t sumi = 0;
        for (int p = 0; p < 4; p++) {
            int s1, s2, m;
            k_scale_min(2 * p, scales, &s1, &m);
            k_scale_min(2 * p + 1, scales, &s2, &m);
            int32_t i1 = 0, i2 = 0;
            for (int l = 0; l < 32; l++) {
                int lo = qs[32 * p + l] & 15, hi = qs[32 * p + l] >> 4;
                if (five) {
                    lo |= ((qh[l] >> (2 * p)) & 1) << 4;
                    hi |= ((qh[l] >> (2 * p + 1)) & 1) << 4;
                }
                i1 += lo * xq[64 * p + l];
                i2 += hi * xq[64 * p + 32 + l];
            }
            sumi += s1 * i1 + s2 * i2;
        }
        const int32_t summ = k_min_sum(scales, x[b].bsums);
        acc = acc + (h2f(ld16(w)) * x[b].d) * (float)sumi;
        accm = accm + (h2f(ld16(w + 2)) * x[b].d) * (float)summ;
    }
    return acc - accm;
}
static float dot_q4_K_scalar(const uint8_t *w, const void *x, int64_t nb) { return dot_q45_K_scalar(w, x, nb, 0); }
static float dot_q5_K_scalar(const uint8_t *w, const void *x, int64_t nb) { return dot_q45_K_scalar(w, x, nb, 1); }

// Σ_s sc_s · 32 · (Σx over 16-value sub-block s): Q6_K's −32 offset, folded in with integers.
static inline int32_t q6_K_offset(const int8_t *scales, const int16_t *bsums) {
    int32_t sum = 0;
    for (int s = 0; s < 16; s++) sum += scales[s] * bsums[s];
    return 32 * sum;
}

// Q6_K (210 bytes: u8 ql[128], u8 qh[64], i8 scales[16], half d): x = d·sc·(q − 32) per 16 values.
// In each half of 128 values, value 32k + l (quarter k, l < 32) has its low 4 bits in
// ql[l] & 15, ql[l+32] & 15, ql[l] >> 4 or ql[l+32] >> 4 for k = 0…3, and its top 2 bits in
// bits 2k, 2k+1 of qh[l].
static float dot_q6_K_scalar(const uint8_t *w, const void *xv, int64_t nb) {
    const cpuk_block_q8k *x = (const cpuk_block_q8k *)xv;
    float acc = 0;
    for (int64_t b = 0; b < nb; b++, w += 210) {
        const int8_t *scales = (const int8_t *)(w + 192);
        int32_t sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w + 64 * h, *qh = w + 128 + 32 * h;
            const int8_t *xq = x[b].qs + 128 * h;
            for (int k = 0; k < 4; k++) {
                for (int s = 0; s < 2; s++) {
                    int32_t isum = 0;
                    for (int l = 16 * s; l < 16 * s + 16; l++) {
                        const int nib = k < 2 ? ql[l + 32 * k] & 15 : ql[l + 32 * (k - 2)] >> 4;
                        const int q = nib | ((qh[l] >> (2 * k)) & 3) << 4;
                        isum += q * xq[32 * k + l];
                    }
                    sumi += scales[8 * h + 2 * k + s] * isum;
                }
            }
        }
        sumi -= q6_K_offset(scales, x[b].bsums);
        acc = acc + (h2f(ld16(w + 208)) * x[b].d) * (float)sumi;
    }
    return acc;
}

// ---- x86 SIMD ---------------------------------------------------------------------------------
#ifdef CPUK_X86

#define TGT_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TGT_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))

static inline TGT_AVX2 __m256i nibbles32(const uint8_t *p) {
    const __m128i t = _mm_loadu_si128((const __m128i *)p);
    const __m256i bytes = _mm256_insertf128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(_mm256_set1_epi8(0x0F), bytes);
}

// 0xFF in byte j where bit j of the 32-bit word at p is set (ggml's bytes_from_bits_32).
static inline TGT_AVX2 __m256i bits32(const uint8_t *p) {
    uint32_t x32; memcpy(&x32, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x32), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

static inline TGT_AVX2 float finish_avx(__m256 acc, float extra) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)); // t0..t3
    const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));                                    // t0+t2, t1+t3
    const float r = _mm_cvtss_f32(s2) + _mm_cvtss_f32(_mm_shuffle_ps(s2, s2, 1));
    return r + extra;
}

// Signed w · signed x in 8 int32 lanes of 4 products each.
static inline TGT_AVX2 __m256i lanes_ss_avx2(__m256i w, __m256i x) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
// Unsigned w · signed x.
static inline TGT_AVX2 __m256i lanes_us_avx2(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}
static inline TGT_VNNI __m256i lanes_ss_vnni(__m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}
static inline TGT_VNNI __m256i lanes_us_vnni(__m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
}

#define LOADX(b) _mm256_loadu_si256((const __m256i *)x[b].qs)
#define ACCUM(A, lanes, d) A = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes), A)

// Block bodies: block b at wb, into accumulator A (and E, the 16 lanes of Q4_1's m·Σx term).
// Q4_1: d and m are adjacent halves: one conversion gives both.
static inline uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
#define BODY_Q4_1(SUF, b, wb, A, E)                                                                    \
    {                                                                                                  \
        const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)ld32(wb)));                             \
        const __m128 p = _mm_mul_ps(dm, _mm_set_ss(x[b].d));                                          \
        A = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), _mm256_cvtepi32_ps(lanes_us_##SUF(nibbles32(wb + 4), LOADX(b))), A); \
        E[(b) & 15] = __builtin_fmaf(_mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1)), x[b].ds, E[(b) & 15]);  \
    }
#define BODY_Q4_0(SUF, b, wb, A, E)                                                                    \
    ACCUM(A, lanes_ss_##SUF(_mm256_sub_epi8(nibbles32(wb + 2), _mm256_set1_epi8(8)), LOADX(b)),       \
          _cvtsh_ss(ld16(wb)) * x[b].d);
#define BODY_Q5_0(SUF, b, wb, A, E)                                                                    \
    ACCUM(A, lanes_ss_##SUF(_mm256_sub_epi8(_mm256_or_si256(nibbles32(wb + 6),                        \
              _mm256_and_si256(bits32(wb + 2), _mm256_set1_epi8(0x10))), _mm256_set1_epi8(16)), LOADX(b)), \
          _cvtsh_ss(ld16(wb)) * x[b].d);
#define BODY_Q8_0(SUF, b, wb, A, E)                                                                    \
    ACCUM(A, lanes_ss_##SUF(_mm256_loadu_si256((const __m256i *)(wb + 2)), LOADX(b)), _cvtsh_ss(ld16(wb)) * x[b].d);

// Even blocks into a0, odd into a1, as the scalar path does.
#define DEFINE_DOT(SUF, TGT, NAME, BYTES, BODY)                                                        \
static TGT float dot_##NAME##_##SUF(const uint8_t *w, const void *xv, int64_t nb) {                     \
    const cpuk_block_q8 *x = (const cpuk_block_q8 *)xv;                                                \
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                         \
    float ext[16] = {0}; /* Q4_1's min term */                                                         \
    int64_t b = 0;                                                                                     \
    for (; b + 1 < nb; b += 2) {                                                                       \
        BODY(SUF, b, (w + b * BYTES), a0, ext)                                                         \
        BODY(SUF, (b + 1), (w + (b + 1) * BYTES), a1, ext)                                             \
    }                                                                                                  \
    if (b < nb) { BODY(SUF, b, (w + b * BYTES), a0, ext) }                                             \
    return finish_avx(_mm256_add_ps(a0, a1), sum16(ext));                                              \
}

#define DEFINE_SIMD(SUF, TGT)                                                                          \
    DEFINE_DOT(SUF, TGT, q4_1, 20, BODY_Q4_1)                                                          \
    DEFINE_DOT(SUF, TGT, q4_0, 18, BODY_Q4_0)                                                          \
    DEFINE_DOT(SUF, TGT, q5_0, 22, BODY_Q5_0)                                                          \
    DEFINE_DOT(SUF, TGT, q8_0, 34, BODY_Q8_0)

// K-quants: maddubs of unsigned weights (≤ 63) with signed activations cannot saturate
// (2·63·127 < 2^15), and madd by the sub-block scale sums pairs into int32 lanes, exactly.
static inline TGT_AVX2 int32_t hsum_i32_avx2(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// The mins of a Q4_K/Q5_K block as 16 int16 lanes, m_j in lanes 2j and 2j+1, so that one madd with
// the 16 bsums gives m_j·(bsums[2j] + bsums[2j+1]) per int32 lane (k_min_sum in SIMD).
static inline TGT_AVX2 __m256i k_mins16(const uint8_t *scales) {
    uint8_t m8[8];
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k_scale_min(j, scales, &sc, &m);
        m8[j] = (uint8_t)m;
    }
    uint64_t packed; memcpy(&packed, m8, 8);
    const __m128i m = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)packed));
    return _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
}
static inline TGT_AVX2 int32_t k_min_sum_avx2(__m256i mins16, const int16_t *bsums) {
    return hsum_i32_avx2(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsums), mins16));
}
// q6_K_offset in SIMD: 32 · Σ_s sc_s·bsums[s].
static inline TGT_AVX2 int32_t q6_K_offset_avx2(__m256i scales16, const int16_t *bsums) {
    return 32 * hsum_i32_avx2(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsums), scales16));
}

// Up to 4 activation rows at once (prompt batches; decode is n = 1): the weights are unpacked once
// per super-block for all of them, and each row gets the same integers and float operations as it
// would alone, so a batch's results are bit-identical to decode's.
#define KN 4
static inline __attribute__((always_inline)) TGT_AVX2 void dot_q45_K_avx2_n(const uint8_t *w, const cpuk_block_q8k *const *x, int n, int64_t nb,
                                             int five, float *out) {
    const int size = five ? 176 : 144;
    const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    float acc[KN] = {0}, accm[KN] = {0};
    for (int64_t b = 0; b < nb; b++, w += size) {
        const uint8_t *scales = w + 4, *qs = w + (five ? 48 : 16);
        const __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(w + 16)) : _mm256_setzero_si256();
        __m256i sumv[KN];
        for (int t = 0; t < KN; t++) sumv[t] = _mm256_setzero_si256();
        for (int p = 0; p < 4; p++) {
            int s1, s2, m;
            k_scale_min(2 * p, scales, &s1, &m);
            k_scale_min(2 * p + 1, scales, &s2, &m);
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
            __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            if (five) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * p), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * p + 1), one), 4));
            }
            const __m256i sc1 = _mm256_set1_epi16((short)s1), sc2 = _mm256_set1_epi16((short)s2);
            for (int t = 0; t < n; t++) {
                const int8_t *xq = x[t][b].qs;
                const __m256i p1 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(xq + 64 * p)));
                const __m256i p2 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + 64 * p + 32)));
                sumv[t] = _mm256_add_epi32(sumv[t], _mm256_madd_epi16(p1, sc1));
                sumv[t] = _mm256_add_epi32(sumv[t], _mm256_madd_epi16(p2, sc2));
            }
        }
        const float d = _cvtsh_ss(ld16(w)), dmin = _cvtsh_ss(ld16(w + 2));
        const __m256i mins16 = k_mins16(scales);
        for (int t = 0; t < n; t++) {
            const int32_t sumi = hsum_i32_avx2(sumv[t]);
            const int32_t summ = k_min_sum_avx2(mins16, x[t][b].bsums);
            acc[t] = acc[t] + (d * x[t][b].d) * (float)sumi;
            accm[t] = accm[t] + (dmin * x[t][b].d) * (float)summ;
        }
    }
    for (int t = 0; t < n; t++) out[t] = acc[t] - accm[t];
}

static inline __attribute__((always_inline)) TGT_AVX2 void dot_q6_K_avx2_n(const uint8_t *w, const cpuk_block_q8k *const *x, int n, int64_t nb, float *out) {
    const __m256i low4 = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3);
    float acc[KN] = {0};
    for (int64_t b = 0; b < nb; b++, w += 210) {
        const int8_t *scales = (const int8_t *)(w + 192);
        __m256i sumv[KN];
        for (int t = 0; t < KN; t++) sumv[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(w + 64 * h));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(w + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
            const __m256i nib[4] = {
                _mm256_and_si256(ql0, low4), _mm256_and_si256(ql1, low4),
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
            };
            for (int k = 0; k < 4; k++) {
                const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), two), 4);
                const __m256i q = _mm256_or_si256(nib[k], high);
                const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(scales[8 * h + 2 * k + 1]),
                                                    _mm_set1_epi16(scales[8 * h + 2 * k]));
                for (int t = 0; t < n; t++) {
                    const int8_t *xq = x[t][b].qs + 128 * h;
                    const __m256i prod = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(xq + 32 * k)));
                    sumv[t] = _mm256_add_epi32(sumv[t], _mm256_madd_epi16(prod, sc));
                }
            }
        }
        const float d = _cvtsh_ss(ld16(w + 208));
        const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)scales));
        for (int t = 0; t < n; t++) {
            const int32_t sumi = hsum_i32_avx2(sumv[t]) - q6_K_offset_avx2(scales16, x[t][b].bsums);
            acc[t] = acc[t] + (d * x[t][b].d) * (float)sumi;
        }
    }
    for (int t = 0; t < n; t++) out[t] = acc[t];
}
static TGT_AVX2 void dot_q4_K_avx2_n(const uint8_t *w, const cpuk_block_q8k *const *x, int n, int64_t nb, float *out) {
    dot_q45_K_avx2_n(w, x, n, nb, 0, out);
}
static TGT_AVX2 void dot_q5_K_avx2_n(const uint8_t *w, const cpuk_block_q8k *const *x, int n, int64_t nb, float *out) {
    dot_q45_K_avx2_n(w, x, n, nb, 1, out);
}

// One activation row: the decode kernels (pick() hands these out).
static TGT_AVX2 float dot_q4_K_avx2(const uint8_t *w, const void *x, int64_t nb) {
    const cpuk_block_q8k *row = (const cpuk_block_q8k *)x;
    float out;
    dot_q45_K_avx2_n(w, &row, 1, nb, 0, &out);
    return out;
}
static TGT_AVX2 float dot_q5_K_avx2(const uint8_t *w, const void *x, int64_t nb) {
    const cpuk_block_q8k *row = (const cpuk_block_q8k *)x;
    float out;
    dot_q45_K_avx2_n(w, &row, 1, nb, 1, &out);
    return out;
}
static TGT_AVX2 float dot_q6_K_avx2(const uint8_t *w, const void *x, int64_t nb) {
    const cpuk_block_q8k *row = (const cpuk_block_q8k *)x;
    float out;
    dot_q6_K_avx2_n(w, &row, 1, nb, &out);
    return out;
}

DEFINE_SIMD(avx2, TGT_AVX2)
DEFINE_SIMD(vnni, TGT_VNNI)

#endif // CPUK_X86

// ---- dispatch ---------------------------------------------------------------------------------

typedef float (*row_dot_fn)(const uint8_t *, const void *, int64_t);

int cpuk_best_isa(void) {
#ifdef CPUK_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        int isa = 0;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
            isa = 1;
            if (__builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni"))
                isa = 2;
        }
        cached = isa;
    }
    return cached;
#else
    return 0;
#endif
}

static row_dot_fn pick(int isa, int type) {
    if (isa > cpuk_best_isa()) isa = cpuk_best_isa();
#ifdef CPUK_X86
    if (isa == 2) {
        switch (type) {
        case CPUK_Q4_1: return dot_q4_1_vnni;
        case CPUK_Q4_0: return dot_q4_0_vnni;
        case CPUK_Q5_0: return dot_q5_0_vnni;
        case CPUK_Q8_0: return dot_q8_0_vnni;
        // The K-quant dots are integer-exact already; AVX2's is as fast here.
        case CPUK_Q4_K: return dot_q4_K_avx2;
        case CPUK_Q5_K: return dot_q5_K_avx2;
        case CPUK_Q6_K: return dot_q6_K_avx2;
        default: return 0;
        }
    }
    if (isa == 1) {
        switch (type) {
        case CPUK_Q4_1: return dot_q4_1_avx2;
        case CPUK_Q4_0: return dot_q4_0_avx2;
        case CPUK_Q5_0: return dot_q5_0_avx2;
        case CPUK_Q8_0: return dot_q8_0_avx2;
        case CPUK_Q4_K: return dot_q4_K_avx2;
        case CPUK_Q5_K: return dot_q5_K_avx2;
        case CPUK_Q6_K: return dot_q6_K_avx2;
        default: return 0;
        }
    }
#endif
    switch (type) {
    case CPUK_Q4_1: return dot_q4_1_scalar;
    case CPUK_Q4_0: return dot_q4_0_scalar;
    case CPUK_Q5_0: return dot_q5_0_scalar;
    case CPUK_Q8_0: return dot_q8_0_scalar;
    case CPUK_Q4_K: return dot_q4_K_scalar;
    case CPUK_Q5_K: return dot_q5_K_scalar;
    case CPUK_Q6_K: return dot_q6_K_scalar;
    default: return 0;
    }
}

int cpuk_vec_dot_rows_isa(int isa, int type, const void *weights, size_t row_stride, int64_t rows,
                          const void *x, int64_t blocks, float *y) {
    const row_dot_fn f = pick(isa, type);
    if (!f) return 0;
    const uint8_t *w = (const uint8_t *)weights;
    for (int64_t r = 0; r < rows; r++) y[r] = f(w + (size_t)r * row_stride, x, blocks);
    return 1;
}

int cpuk_vec_dot_rows(int type, const void *weights, size_t row_stride, int64_t rows,
                      const void *x, int64_t blocks, float *y) {
    return cpuk_vec_dot_rows_isa(2, type, weights, row_stride, rows, x, blocks, y);
}

// ---- threads ----------------------------------------------------------------------------------
// A decode step is ~200 small mat-vecs of tens of microseconds each: waking a sleeping thread per
// call costs about as much as the work. As llama.cpp's thread pool does, helpers spin briefly
// between calls (then sleep on a condition variable), so a call costs a store and a few loads.
// A job is split into chunks (one or a few per thread), and every thread, the caller included,
// claims chunks from one atomic counter. The caller waits only for chunks already claimed, never
// for a helper to show up: on a loaded machine a helper may not be scheduled for milliseconds, and
// with fixed shares per thread each mat-vec would wait that long (measured: 2 threads 3x slower
// than 1; now as fast as 1).

#define CPUK_MAX_THREADS 64
#define RM_ALL 4 // rows per tile of the batch kernels; chunks of rows are multiples of it
#define CPUK_SPINS 20000

// Spin-wait step: pause; after ~2000 steps (tens of microseconds, longer than a chunk) the thread
// that claimed the chunk waited for is likely descheduled, so give the core away each step.
// (Yielding from the start measured 2x slower: it hands the core to other processes too often.)
static inline void cpu_relax(unsigned step) {
#ifdef CPUK_X86
    _mm_pause();
#endif
    if (step > 2048) sched_yield();
}

// A job: fn(ctx, chunk) for every chunk in 0..<chunks, on the caller and helpers 1..<nth.
typedef void (*pool_fn)(const void *ctx, int64_t chunk);
typedef struct {
    pool_fn fn;
    const void *ctx;
    int64_t chunks;
    int nth;
} pool_job_t;

static pthread_mutex_t pool_call = PTHREAD_MUTEX_INITIALIZER; // one job at a time
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static _Atomic uint64_t pool_gen;   // bumped to publish a job
static _Atomic uint64_t pool_next;  // (job tag << 32) | next unclaimed chunk; tag 0xFFFFFFFF: no job
static _Atomic int64_t pool_done;   // chunks finished in the current job
static _Atomic int pool_sleepers;
static int pool_workers;
static pool_job_t pool_job;
// Set on pool threads and on a caller while it runs its share: a parallel call from inside a job
// runs serially instead of waiting for the pool it is part of.
static _Thread_local int pool_inside;

#define NO_JOB UINT64_MAX
static inline uint64_t job_tag(uint64_t gen) { return (gen & 0x7FFFFFFFu) << 32; }

// Claims and runs chunks of the job published as `gen` until none are left. A helper's copy of
// the job may be stale or torn if that job has ended meanwhile; then no claim can succeed (the
// counter carries another tag), so the copy is never used.
static void run_chunks(const pool_job_t *job, uint64_t gen) {
    const uint64_t tag = job_tag(gen);
    for (;;) {
        uint64_t cur = atomic_load(&pool_next);
        if ((cur & 0xFFFFFFFF00000000u) != tag) return;
        const int64_t chunk = (int64_t)(cur & 0xFFFFFFFFu);
        if (chunk >= job->chunks) return;
        if (!atomic_compare_exchange_weak(&pool_next, &cur, cur + 1)) continue;
        job->fn(job->ctx, chunk);
        atomic_fetch_add(&pool_done, 1);
    }
}

typedef struct { int index; uint64_t seen; } worker_arg;
static worker_arg worker_args[CPUK_MAX_THREADS];

static void *worker_main(void *p) {
    const worker_arg *arg = (const worker_arg *)p;
    const int index = arg->index;
    uint64_t seen = arg->seen;
    pool_inside = 1;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load(&pool_gen)) == seen) {
            if (++spins < CPUK_SPINS) { cpu_relax((unsigned)spins); continue; }
            pthread_mutex_lock(&pool_mu);
            atomic_fetch_add(&pool_sleepers, 1);
            while (atomic_load(&pool_gen) == seen) pthread_cond_wait(&pool_cv, &pool_mu);
            atomic_fetch_sub(&pool_sleepers, 1);
            pthread_mutex_unlock(&pool_mu);
            spins = 0;
        }
        seen = g;
        const pool_job_t job = pool_job;
        if (index < job.nth) run_chunks(&job, g);
    }
    return 0;
}

// Takes the pool for one job and grows it to nth − 1 helpers; returns how many threads the job
// gets (fewer if a thread could not be created), or 0 from inside a job: the caller then works
// alone and must not call pool_run.
static int pool_reserve(int nth) {
    if (pool_inside) return 0;
    if (nth > CPUK_MAX_THREADS) nth = CPUK_MAX_THREADS;
    pthread_mutex_lock(&pool_call);
    while (pool_workers < nth - 1) {
        worker_arg *arg = &worker_args[pool_workers];
        arg->index = pool_workers + 1;
        arg->seen = atomic_load(&pool_gen);
        pthread_t t;
        if (pthread_create(&t, 0, worker_main, arg) != 0) break;
        pthread_detach(t);
        pool_workers++;
    }
    return nth > pool_workers + 1 ? pool_workers + 1 : nth;
}

// After pool_reserve: runs the job's chunks on up to nth threads and releases the pool.
static void pool_run(pool_fn fn, const void *ctx, int64_t chunks, int nth) {
    const uint64_t gen = atomic_load(&pool_gen) + 1;
    pool_job = (pool_job_t){fn, ctx, chunks, nth};
    atomic_store(&pool_done, 0);
    atomic_store(&pool_next, job_tag(gen));
    atomic_store(&pool_gen, gen);
    if (atomic_load(&pool_sleepers) > 0) {
        pthread_mutex_lock(&pool_mu);
        pthread_cond_broadcast(&pool_cv);
        pthread_mutex_unlock(&pool_mu);
    }
    pool_inside = 1;
    run_chunks(&pool_job, gen);
    pool_inside = 0;
    for (unsigned step = 1; atomic_load(&pool_done) < chunks; step++) cpu_relax(step);
    // Close the job before its description is overwritten by the next one.
    atomic_store(&pool_next, NO_JOB);
    pthread_mutex_unlock(&pool_call);
}

// Runs fn(ctx, 0..<chunks) over up to `threads` threads (serially from inside a job).
static void pool_parallel(pool_fn fn, const void *ctx, int64_t chunks, int threads) {
    const int nth = threads > 1 && chunks > 1 ? pool_reserve(threads) : 0;
    if (nth > 0) {
        pool_run(fn, ctx, chunks, nth);
    } else {
        for (int64_t c = 0; c < chunks; c++) fn(ctx, c);
    }
}

// Rows per chunk: about `per_thread` chunks per thread, a multiple of `multiple`, at least
// `minimum` rows.
static int64_t chunk_rows(int64_t rows, int threads, int per_thread, int64_t multiple, int64_t minimum) {
    const int64_t chunks = (int64_t)threads * per_thread;
    int64_t per = (rows + chunks - 1) / chunks;
    if (per < minimum) per = minimum;
    return (per + multiple - 1) / multiple * multiple;
}

typedef struct {
    cpuk_task_fn fn;
    void *ctx;
} tasks_job;

static void tasks_chunk(const void *ctx, int64_t chunk) {
    const tasks_job *j = (const tasks_job *)ctx;
    j->fn(j->ctx, (int)chunk);
}

void cpuk_parallel(int tasks, cpuk_task_fn fn, void *ctx) {
    const tasks_job job = {fn, ctx};
    pool_parallel(tasks_chunk, &job, tasks, tasks);
}

typedef struct {
    row_dot_fn f;
    const uint8_t *w;
    size_t stride;
    int64_t rows, blocks, per;
    const void *x;
    float *y;
} rows_job;

static void rows_chunk(const void *ctx, int64_t chunk) {
    const rows_job *j = (const rows_job *)ctx;
    const int64_t lo = chunk * j->per;
    const int64_t hi = lo + j->per < j->rows ? lo + j->per : j->rows;
    for (int64_t r = lo; r < hi; r++) j->y[r] = j->f(j->w + (size_t)r * j->stride, j->x, j->blocks);
}

int cpuk_vec_dot_rows_parallel(int type, const void *weights, size_t row_stride, int64_t rows,
                               const void *x, int64_t blocks, float *y, int threads) {
    const row_dot_fn f = pick(2, type);
    if (!f) return 0;
    // One chunk per thread, in multiples of 16 rows: a mat-vec is tens of microseconds, and finer
    // chunks measured 12% slower decode on a quiet machine (SmolLM2: 146 against 128 tok/s with 4
    // per thread), the claims' cache-line traffic costing more than the balance gains. A helper
    // that is not scheduled still costs nothing: the caller claims its chunk too.
    const int64_t per = chunk_rows(rows, threads, 1, 16, 32);
    const rows_job job = {f, (const uint8_t *)weights, row_stride, rows, blocks, per, x, y};
    pool_parallel(rows_chunk, &job, (rows + per - 1) / per, threads);
    return 1;
}

// ---- prompt batches (matrix × matrix) ---------------------------------------------------------
// y[t·ldy + r] = row r · token t. The generic path dots every (row, token) pair with the decode
// kernels, a row's blocks staying in L1 across tokens. The 32-value block types also have an
// AVX512-VNNI kernel that unpacks a tile of 4 weight rows once to unsigned bytes u (weight value
// q = u − offset: Q4_0 u = nibble, offset 8; Q5_0 offset 16; Q8_0 u = q + 128, offset 128; Q4_1
// offset 0) and multiplies them with 2 tokens at a time, 2 blocks per 512-bit `dpbusd`.
// Batch invariance: every output is the float the decode kernel forms for that (row, token).
// `dpbusd` starts each int32 lane from −offset·Σx over its 4 activation values (precomputed per
// token), so the lane holds Σ (u − offset)·x, the decode kernels' integer; lanes 0–7 of a block
// pair are the even block's, 8–15 the odd one's, as the decode kernels' two accumulators; the
// scale d·dx, the FMA, the final tree and Q4_1's 16-lane min term are the decode kernels' too.

static void *alloc64(size_t n) { return aligned_alloc(64, (n + 63) / 64 * 64); }

typedef struct {
    int type;
    row_dot_fn f;
    const uint8_t *w;
    size_t stride;
    int64_t rows, tokens, blocks, per;
    const uint8_t *x;    // tokens activation rows, x_stride bytes apart
    size_t x_stride;
    float *y;
    int64_t ldy;
    // VNNI kernel's token side: int8 values, d pairs, −offset·Σx per lane, dx·Σq (Q4_1); blocks
    // padded to an even count.
    int64_t nbp, nbe; // blocks padded to pairs; to 16 (the min term's vector width)
    const int8_t *xq;
    const float *dxp;
    const int32_t *xo;
    const float *cs;
} gemm_job;

typedef void (*rows_dot_n_fn)(const uint8_t *, const cpuk_block_q8k *const *, int, int64_t, float *);

static rows_dot_n_fn pick_n(int type) {
#ifdef CPUK_X86
    if (cpuk_best_isa() >= 1) {
        switch (type) {
        case CPUK_Q4_K: return dot_q4_K_avx2_n;
        case CPUK_Q5_K: return dot_q5_K_avx2_n;
        case CPUK_Q6_K: return dot_q6_K_avx2_n;
        default: break;
        }
    }
#endif
    (void)type;
    return 0;
}

static void gemm_generic_slice(const void *ctx, int64_t chunk) {
    const gemm_job *j = (const gemm_job *)ctx;
    const int64_t lo = chunk * j->per;
    const int64_t hi = lo + j->per < j->rows ? lo + j->per : j->rows;
    const rows_dot_n_fn fn = pick_n(j->type);
    for (int64_t r = lo; r < hi; r++) {
        const uint8_t *w = j->w + (size_t)r * j->stride;
        int64_t t = 0;
        if (fn) {
            // K-quants: 4 tokens per pass over the row's super-blocks.
            for (; t + 1 < j->tokens; t += 4) {
                const int n = j->tokens - t < 4 ? (int)(j->tokens - t) : 4;
                const cpuk_block_q8k *xs[4];
                float out[4];
                for (int k = 0; k < n; k++) xs[k] = (const cpuk_block_q8k *)(j->x + (size_t)(t + k) * j->x_stride);
                fn(w, xs, n, j->blocks, out);
                for (int k = 0; k < n; k++) j->y[(t + k) * j->ldy + r] = out[k];
            }
        }
        for (; t < j->tokens; t++) j->y[t * j->ldy + r] = j->f(w, j->x + (size_t)t * j->x_stride, j->blocks);
    }
}

#ifdef CPUK_X86
// Weight block b of a 32-value type as bytes u[32], scale d and (Q4_1) min e (see above).
static void unpack32(int type, const uint8_t *wb, uint8_t *u, float *d, float *e) {
    switch (type) {
    case CPUK_Q4_0:
    case CPUK_Q4_1: {
        const uint8_t *qs = wb + (type == CPUK_Q4_1 ? 4 : 2);
        for (int j = 0; j < 16; j++) { u[j] = qs[j] & 15; u[j + 16] = qs[j] >> 4; }
        *d = h2f(ld16(wb));
        *e = type == CPUK_Q4_1 ? h2f(ld16(wb + 2)) : 0;
        break;
    }
    case CPUK_Q5_0: {
        uint32_t qh; memcpy(&qh, wb + 2, 4);
        for (int j = 0; j < 16; j++) {
            u[j] = (uint8_t)((wb[6 + j] & 15) | (((qh >> j) & 1) << 4));
            u[j + 16] = (uint8_t)((wb[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        *d = h2f(ld16(wb));
        *e = 0;
        break;
    }
    default: // CPUK_Q8_0
        for (int j = 0; j < 32; j++) u[j] = (uint8_t)(wb[2 + j] ^ 0x80);
        *d = h2f(ld16(wb));
        *e = 0;
        break;
    }
}

// The weights' offset: value q = u − offset.
static int offset32(int type) {
    switch (type) {
    case CPUK_Q4_0: return 8;
    case CPUK_Q4_1: return 0;
    case CPUK_Q5_0: return 16;
    default: return 128;
    }
}

static int block_bytes32(int type) {
    switch (type) {
    case CPUK_Q4_0: return 18;
    case CPUK_Q4_1: return 20;
    case CPUK_Q5_0: return 22;
    default: return 34;
    }
}

#define RM RM_ALL
static TGT_VNNI void gemm_vnni_slice(const void *ctx, int64_t chunk) {
    const gemm_job *j = (const gemm_job *)ctx;
    const int64_t lo = chunk * j->per;
    const int64_t hi = lo + j->per < j->rows ? lo + j->per : j->rows;
    if (lo >= hi) return;
    const int64_t nbp = j->nbp, nbe = j->nbe, pairs = nbp / 2;
    const int bytes = block_bytes32(j->type);
    // The tile: RM rows of bytes, d pairs spread to 16 lanes, and e.
    uint8_t *u = alloc64((size_t)RM * nbp * 32);
    float *dwp = alloc64((size_t)RM * pairs * 16 * sizeof(float));
    float *e = alloc64((size_t)RM * nbe * sizeof(float));
    if (!u || !dwp || !e) { // out of memory: the (row, token) dots need no tile
        free(u);
        free(dwp);
        free(e);
        gemm_generic_slice(ctx, chunk);
        return;
    }
    for (int64_t r0 = lo; r0 < hi; r0 += RM) {
        const int rr = hi - r0 < RM ? (int)(hi - r0) : RM;
        for (int i = 0; i < RM; i++) {
            for (int64_t b = nbp; b < nbe; b++) e[i * nbe + b] = 0;
            for (int64_t b = 0; b < nbp; b++) {
                float d = 0, ee = 0;
                if (i < rr && b < j->blocks) {
                    unpack32(j->type, j->w + (size_t)(r0 + i) * j->stride + (size_t)b * bytes, u + (i * nbp + b) * 32, &d, &ee);
                } else {
                    memset(u + (i * nbp + b) * 32, 0, 32);
                }
                e[i * nbe + b] = ee;
                float *lanes = dwp + (i * pairs + b / 2) * 16 + (b & 1) * 8;
                for (int l = 0; l < 8; l++) lanes[l] = d;
            }
        }
        for (int64_t t = 0; t < j->tokens; t += 2) {
            const int64_t t1 = t + 1 < j->tokens ? t + 1 : t;
            const int8_t *x0 = j->xq + t * nbp * 32, *x1 = j->xq + t1 * nbp * 32;
            const float *dx0 = j->dxp + t * pairs * 16, *dx1 = j->dxp + t1 * pairs * 16;
            const int32_t *o0 = j->xo + t * pairs * 16, *o1 = j->xo + t1 * pairs * 16;
            __m512 acc[RM][2];
            for (int i = 0; i < RM; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
            for (int64_t p = 0; p < pairs; p++) {
                const __m512i xa = _mm512_load_si512(x0 + 64 * p), xb = _mm512_load_si512(x1 + 64 * p);
                const __m512i oa = _mm512_load_si512(o0 + 16 * p), ob = _mm512_load_si512(o1 + 16 * p);
                const __m512 da = _mm512_load_ps(dx0 + 16 * p), db = _mm512_load_ps(dx1 + 16 * p);
                for (int i = 0; i < RM; i++) {
                    const __m512i w = _mm512_load_si512(u + (i * nbp + 2 * p) * 32);
                    const __m512 dw = _mm512_load_ps(dwp + (i * pairs + p) * 16);
                    const __m512i sa = _mm512_dpbusd_epi32(oa, w, xa);
                    const __m512i sb = _mm512_dpbusd_epi32(ob, w, xb);
                    acc[i][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sa), _mm512_mul_ps(dw, da), acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sb), _mm512_mul_ps(dw, db), acc[i][1]);
                }
            }
            for (int i = 0; i < rr; i++) {
                for (int k = 0; k < (t1 > t ? 2 : 1); k++) {
                    float extra = 0.0f;
                    if (j->type == CPUK_Q4_1) {
                        // Σ_b e_b·cs_b in lane b mod 16, as the decode kernels keep it.
                        const float *cs = j->cs + (t + k) * nbe, *ei = e + i * nbe;
                        __m512 m = _mm512_setzero_ps();
                        for (int64_t b = 0; b < nbe; b += 16) m = _mm512_fmadd_ps(_mm512_load_ps(ei + b), _mm512_load_ps(cs + b), m);
                        float lanes[16];
                        _mm512_storeu_ps(lanes, m);
                        extra = sum16(lanes);
                    }
                    const __m512 a = acc[i][k];
                    const __m256 even = _mm512_castps512_ps256(a);
                    const __m256 odd = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
                    j->y[(t + k) * j->ldy + r0 + i] = finish_avx(_mm256_add_ps(even, odd), extra);
                }
            }
        }
    }
    free(u);
    free(dwp);
    free(e);
}
#endif

// Below this many tokens (beam search's few rows per step) unpacking a weight tile costs more than
// it saves: each (row, token) pair takes the decode kernel, the row's blocks staying in L1.
#define GEMM_MIN_TOKENS 8

int cpuk_gemm_parallel(int type, const void *weights, size_t row_stride, int64_t rows,
                       const void *x, size_t x_stride, int64_t tokens, int64_t blocks,
                       float *y, int64_t ldy, int threads) {
    const row_dot_fn f = pick(2, type);
    if (!f) return 0;
    int nth = threads;
    if (nth > rows / 16) nth = (int)(rows / 16);
    if (nth < 1) nth = 1;
    gemm_job job = {type, f, (const uint8_t *)weights, row_stride, rows, tokens, blocks, 0,
                    (const uint8_t *)x, x_stride, y, ldy, 0, 0, 0, 0, 0, 0};
    pool_fn slice = gemm_generic_slice;
    int8_t *xq = 0;
    float *dxp = 0, *cs = 0;
    int32_t *xo = 0;
#ifdef CPUK_X86
    const int64_t nbp = (blocks + 1) / 2 * 2, nbe = (blocks + 15) / 16 * 16, pairs = nbp / 2;
    if (cpuk_activation_block(type) == 32 && cpuk_best_isa() == 2 && tokens >= GEMM_MIN_TOKENS) {
        xq = alloc64((size_t)tokens * nbp * 32);
        dxp = alloc64((size_t)tokens * pairs * 16 * sizeof(float));
        xo = alloc64((size_t)tokens * pairs * 16 * sizeof(int32_t));
        cs = alloc64((size_t)tokens * nbe * sizeof(float));
    }
    if (xq && dxp && xo && cs) { // else (not this kernel, or out of memory) the generic path
        const int offset = offset32(type);
        for (int64_t t = 0; t < tokens; t++) {
            const cpuk_block_q8 *xt = (const cpuk_block_q8 *)(job.x + (size_t)t * x_stride);
            for (int64_t b = 0; b < nbp; b++) {
                const int real = b < blocks;
                if (real) memcpy(xq + (t * nbp + b) * 32, xt[b].qs, 32);
                else memset(xq + (t * nbp + b) * 32, 0, 32);
                const float dx = real ? xt[b].d : 0;
                cs[t * nbe + b] = real ? xt[b].ds : 0;
                float *lanes = dxp + (t * pairs + b / 2) * 16 + (b & 1) * 8;
                int32_t *offsets = xo + (t * pairs + b / 2) * 16 + (b & 1) * 8;
                for (int l = 0; l < 8; l++) {
                    lanes[l] = dx;
                    int32_t sum = 0;
                    if (real) for (int k = 0; k < 4; k++) sum += xt[b].qs[4 * l + k];
                    offsets[l] = -offset * sum;
                }
            }
            for (int64_t b = nbp; b < nbe; b++) cs[t * nbe + b] = 0;
        }
        job.nbp = nbp;
        job.nbe = nbe;
        job.xq = xq;
        job.dxp = dxp;
        job.xo = xo;
        job.cs = cs;
        slice = gemm_vnni_slice;
    }
#endif
    // Batches run for milliseconds: 4 chunks per thread keep the threads balanced.
    job.per = chunk_rows(rows, nth, 4, RM_ALL, 16);
    pool_parallel(slice, &job, (rows + job.per - 1) / job.per, nth);
    free(xq);
    free(dxp);
    free(xo);
    free(cs);
    return 1;
}
