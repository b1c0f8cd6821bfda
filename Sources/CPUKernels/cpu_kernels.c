// Integer dot products for the CPU decode mat-vec, as llama.cpp's ggml-cpu does them: the activation
// row is quantized once to 8-bit blocks, each weight block is multiplied with integer SIMD, and the
// per-block integer sums are scaled in float. Every path (scalar, AVX2, AVX512-VNNI) forms the same
// integer lane sums (4 consecutive elements each, 8 lanes per block) and does the same float
// operations in the same order, so results are bit-identical whichever path the CPU takes.
#include "CPUKernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
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
        y[b].sum = sum;
    }
}

// ---- shared float epilogue --------------------------------------------------------------------

// acc[l] += d · lane[l] for 8 lanes; then ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)) + extra.
// Two accumulator sets (even blocks, odd blocks) to break the add chain: a = acc0 + acc1 lane-wise.
static inline float finish8(const float acc[2][8], const float extra[2]) {
    float a[8];
    for (int l = 0; l < 8; l++) a[l] = acc[0][l] + acc[1][l];
    const float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
    return ((t0 + t2) + (t1 + t3)) + (extra[0] + extra[1]);
}

// ---- scalar -----------------------------------------------------------------------------------

static inline void lanes_scalar(float acc[8], const int8_t *w, const int8_t *x, float d) {
    for (int l = 0; l < 8; l++) {
        int32_t s = 0;
        for (int k = 0; k < 4; k++) s += (int32_t)w[4 * l + k] * (int32_t)x[4 * l + k];
        acc[l] = acc[l] + d * (float)s;
    }
}

static float dot_q4_1_scalar(const uint8_t *w, const cpuk_block_q8 *x, int64_t nb) {
    float acc[2][8] = {{0}}, extra[2] = {0};
    for (int64_t b = 0; b < nb; b++, w += 20) {
        int8_t q[32];
        for (int j = 0; j < 16; j++) { q[j] = (int8_t)(w[4 + j] & 15); q[j + 16] = (int8_t)(w[4 + j] >> 4); }
        lanes_scalar(acc[b & 1], q, x[b].qs, h2f(ld16(w)) * x[b].d);
        extra[b & 1] = extra[b & 1] + (h2f(ld16(w + 2)) * x[b].d) * (float)x[b].sum;
    }
    return finish8(acc, extra);
}

static float dot_q4_0_scalar(const uint8_t *w, const cpuk_block_q8 *x, int64_t nb) {
    float acc[2][8] = {{0}}, extra[2] = {0};
    for (int64_t b = 0; b < nb; b++, w += 18) {
        int8_t q[32];
        for (int j = 0; j < 16; j++) { q[j] = (int8_t)((w[2 + j] & 15) - 8); q[j + 16] = (int8_t)((w[2 + j] >> 4) - 8); }
        lanes_scalar(acc[b & 1], q, x[b].qs, h2f(ld16(w)) * x[b].d);
    }
    return finish8(acc, extra);
}

static float dot_q5_0_scalar(const uint8_t *w, const cpuk_block_q8 *x, int64_t nb) {
    float acc[2][8] = {{0}}, extra[2] = {0};
    for (int64_t b = 0; b < nb; b++, w += 22) {
        uint32_t qh; memcpy(&qh, w + 2, 4);
        int8_t q[32];
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(((w[6 + j] & 15) | (((qh >> j) & 1) << 4)) - 16);
            q[j + 16] = (int8_t)(((w[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
        }
        lanes_scalar(acc[b & 1], q, x[b].qs, h2f(ld16(w)) * x[b].d);
    }
    return finish8(acc, extra);
}

static float dot_q8_0_scalar(const uint8_t *w, const cpuk_block_q8 *x, int64_t nb) {
    float acc[2][8] = {{0}}, extra[2] = {0};
    for (int64_t b = 0; b < nb; b++, w += 34) {
        lanes_scalar(acc[b & 1], (const int8_t *)(w + 2), x[b].qs, h2f(ld16(w)) * x[b].d);
    }
    return finish8(acc, extra);
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
#define ACCUM(A, lanes, d) A = _mm256_add_ps(A, _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes)))

// Block bodies: block b at wb, into accumulator A (and E for Q4_1's m·Σx term).
#define BODY_Q4_1(SUF, b, wb, A, E)                                                                    \
    ACCUM(A, lanes_us_##SUF(nibbles32(wb + 4), LOADX(b)), _cvtsh_ss(ld16(wb)) * x[b].d);               \
    E = E + (_cvtsh_ss(ld16(wb + 2)) * x[b].d) * (float)x[b].sum;
#define BODY_Q4_0(SUF, b, wb, A, E)                                                                    \
    ACCUM(A, lanes_ss_##SUF(_mm256_sub_epi8(nibbles32(wb + 2), _mm256_set1_epi8(8)), LOADX(b)),       \
          _cvtsh_ss(ld16(wb)) * x[b].d);
#define BODY_Q5_0(SUF, b, wb, A, E)                                                                    \
    ACCUM(A, lanes_ss_##SUF(_mm256_sub_epi8(_mm256_or_si256(nibbles32(wb + 6),                        \
              _mm256_and_si256(bits32(wb + 2), _mm256_set1_epi8(0x10))), _mm256_set1_epi8(16)), LOADX(b)), \
          _cvtsh_ss(ld16(wb)) * x[b].d);
#define BODY_Q8_0(SUF, b, wb, A, E)                                                                    \
    ACCUM(A, lanes_ss_##SUF(_mm256_loadu_si256((const __m256i *)(wb + 2)), LOADX(b)), _cvtsh_ss(ld16(wb)) * x[b].d);

// Even blocks into (a0, e0), odd into (a1, e1), as the scalar path does.
#define DEFINE_DOT(SUF, TGT, NAME, BYTES, BODY)                                                        \
static TGT float dot_##NAME##_##SUF(const uint8_t *w, const cpuk_block_q8 *x, int64_t nb) {             \
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                         \
    float e0 = 0, e1 = 0;                                                                              \
    int64_t b = 0;                                                                                     \
    for (; b + 1 < nb; b += 2) {                                                                       \
        BODY(SUF, b, (w + b * BYTES), a0, e0)                                                          \
        BODY(SUF, (b + 1), (w + (b + 1) * BYTES), a1, e1)                                              \
    }                                                                                                  \
    if (b < nb) { BODY(SUF, b, (w + b * BYTES), a0, e0) }                                              \
    (void)e1;                                                                                          \
    return finish_avx(_mm256_add_ps(a0, a1), e0 + e1);                                                 \
}

#define DEFINE_SIMD(SUF, TGT)                                                                          \
    DEFINE_DOT(SUF, TGT, q4_1, 20, BODY_Q4_1)                                                          \
    DEFINE_DOT(SUF, TGT, q4_0, 18, BODY_Q4_0)                                                          \
    DEFINE_DOT(SUF, TGT, q5_0, 22, BODY_Q5_0)                                                          \
    DEFINE_DOT(SUF, TGT, q8_0, 34, BODY_Q8_0)

DEFINE_SIMD(avx2, TGT_AVX2)
DEFINE_SIMD(vnni, TGT_VNNI)

#endif // CPUK_X86

// ---- dispatch ---------------------------------------------------------------------------------

typedef float (*row_dot_fn)(const uint8_t *, const cpuk_block_q8 *, int64_t);

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
        default: return 0;
        }
    }
    if (isa == 1) {
        switch (type) {
        case CPUK_Q4_1: return dot_q4_1_avx2;
        case CPUK_Q4_0: return dot_q4_0_avx2;
        case CPUK_Q5_0: return dot_q5_0_avx2;
        case CPUK_Q8_0: return dot_q8_0_avx2;
        default: return 0;
        }
    }
#endif
    switch (type) {
    case CPUK_Q4_1: return dot_q4_1_scalar;
    case CPUK_Q4_0: return dot_q4_0_scalar;
    case CPUK_Q5_0: return dot_q5_0_scalar;
    case CPUK_Q8_0: return dot_q8_0_scalar;
    default: return 0;
    }
}

int cpuk_vec_dot_rows_isa(int isa, int type, const void *weights, size_t row_stride, int64_t rows,
                          const cpuk_block_q8 *x, int64_t blocks, float *y) {
    const row_dot_fn f = pick(isa, type);
    if (!f) return 0;
    const uint8_t *w = (const uint8_t *)weights;
    for (int64_t r = 0; r < rows; r++) y[r] = f(w + (size_t)r * row_stride, x, blocks);
    return 1;
}

int cpuk_vec_dot_rows(int type, const void *weights, size_t row_stride, int64_t rows,
                      const cpuk_block_q8 *x, int64_t blocks, float *y) {
    return cpuk_vec_dot_rows_isa(2, type, weights, row_stride, rows, x, blocks, y);
}

// ---- threads ----------------------------------------------------------------------------------
// A decode step is ~200 small mat-vecs of tens of microseconds each: waking a sleeping thread per
// call costs about as much as the work. As llama.cpp's thread pool does, helpers spin briefly
// between calls (then sleep on a condition variable), so a call costs a store and a few loads.

#define CPUK_MAX_THREADS 64
#define CPUK_SPINS 20000

// Spin-wait step: pause; after ~2000 steps (tens of microseconds, longer than a mat-vec slice)
// the thread waited for is likely descheduled on a loaded machine, so give the core away each step.
// (Yielding from the start measured 2x slower: it hands the core to other processes too often.)
static inline void cpu_relax(unsigned step) {
#ifdef CPUK_X86
    _mm_pause();
#endif
    if (step > 2048) sched_yield();
}

typedef struct {
    row_dot_fn f;
    const uint8_t *w;
    size_t stride;
    int64_t rows, blocks, per;
    const cpuk_block_q8 *x;
    float *y;
    int nth;
} cpuk_job;

static pthread_mutex_t pool_call = PTHREAD_MUTEX_INITIALIZER; // one job at a time
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static _Atomic uint64_t pool_gen;
static _Atomic int pool_pending;
static _Atomic int pool_sleepers;
static int pool_workers;
static cpuk_job pool_job;

static void run_slice(const cpuk_job *j, int index) {
    const int64_t lo = (int64_t)index * j->per;
    const int64_t hi = lo + j->per < j->rows ? lo + j->per : j->rows;
    for (int64_t r = lo; r < hi; r++) j->y[r] = j->f(j->w + (size_t)r * j->stride, j->x, j->blocks);
}

typedef struct { int index; uint64_t seen; } worker_arg;
static worker_arg worker_args[CPUK_MAX_THREADS];

static void *worker_main(void *p) {
    const worker_arg *arg = (const worker_arg *)p;
    const int index = arg->index;
    uint64_t seen = arg->seen;
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
        const cpuk_job job = pool_job;
        if (index < job.nth) run_slice(&job, index);
        atomic_fetch_sub(&pool_pending, 1);
    }
    return 0;
}

int cpuk_vec_dot_rows_parallel(int type, const void *weights, size_t row_stride, int64_t rows,
                               const cpuk_block_q8 *x, int64_t blocks, float *y, int threads) {
    const row_dot_fn f = pick(2, type);
    if (!f) return 0;
    int nth = threads < CPUK_MAX_THREADS ? threads : CPUK_MAX_THREADS;
    // At least 64 rows per thread, in slices of 16 rows.
    if (nth > rows / 64) nth = (int)(rows / 64);
    if (nth <= 1) return cpuk_vec_dot_rows_isa(2, type, weights, row_stride, rows, x, blocks, y);
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
    if (nth > pool_workers + 1) nth = pool_workers + 1;
    const int64_t per = ((rows + nth - 1) / nth + 15) / 16 * 16;
    pool_job = (cpuk_job){f, (const uint8_t *)weights, row_stride, rows, blocks, per, x, y, nth};
    atomic_store(&pool_pending, pool_workers);
    atomic_fetch_add(&pool_gen, 1);
    if (atomic_load(&pool_sleepers) > 0) {
        pthread_mutex_lock(&pool_mu);
        pthread_cond_broadcast(&pool_cv);
        pthread_mutex_unlock(&pool_mu);
    }
    run_slice(&pool_job, 0);
    for (unsigned step = 1; atomic_load(&pool_pending) > 0; step++) cpu_relax(step);
    pthread_mutex_unlock(&pool_call);
    return 1;
}
