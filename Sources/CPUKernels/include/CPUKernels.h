#ifndef CPU_KERNELS_H
#define CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Activation block for the integer dots: 32 values x ≈ d·q, as llama.cpp's quantize_row_q8_0/q8_1
/// round them (d = amax/127 rounded to f16, q = nearest-even(x·127/amax)). `sum` = Σq, exact, and
/// `ds` = d·Σq: Q4_1's min term is m·ds per block, and the batch kernels fold offsets in with it.
typedef struct {
    float d;
    float ds;    // d · sum, next to d: Q4_1's kernel loads both with one move
    int32_t sum;
    int8_t qs[32];
} cpuk_block_q8;

/// Activation super-block for the K-quant dots: 256 values x ≈ d·q, as llama.cpp's
/// quantize_row_q8_K rounds them (iscale = −127/v with v the value of largest magnitude,
/// q = min(127, nearest-even(iscale·x)), d = 1/iscale in f32). `bsums` = Σq over each 16 values,
/// exact, so the K-quants' mins and offsets are folded in with integers.
typedef struct {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
} cpuk_block_q8k;

/// Weight types with an integer dot (values match GGMLType's raw values).
enum {
    CPUK_Q4_0 = 2,
    CPUK_Q4_1 = 3,
    CPUK_Q5_0 = 6,
    CPUK_Q8_0 = 8,
    CPUK_Q4_K = 12,
    CPUK_Q5_K = 13,
    CPUK_Q6_K = 14,
};

/// The activation format `type`'s dot takes: 32 (cpuk_block_q8), 256 (cpuk_block_q8k), or 0 if
/// `type` has no integer dot.
int cpuk_activation_block(int type);

/// Quantizes `count` floats (a multiple of 32) into count/32 blocks.
void cpuk_quantize_row_q8(const float *x, cpuk_block_q8 *y, int64_t count);

/// Quantizes `count` floats (a multiple of 256) into count/256 super-blocks.
void cpuk_quantize_row_q8k(const float *x, cpuk_block_q8k *y, int64_t count);

/// y[r] = Σ_blocks dot(weight row r, x) for r in 0..<rows; rows are `row_stride` bytes apart, each
/// `blocks` blocks of `type` (super-blocks for K-quants). `x` holds `blocks` activation blocks in
/// the format cpuk_activation_block(type) names. Returns 0 if `type` has no integer dot. Picks
/// AVX512-VNNI, AVX2 or scalar at run time; all give bit-identical results (integer block sums,
/// same float order).
int cpuk_vec_dot_rows(int type, const void *weights, size_t row_stride, int64_t rows,
                      const void *x, int64_t blocks, float *y);

/// The same with a fixed path: 0 scalar, 1 AVX2, 2 AVX512-VNNI (falls back to the best supported).
int cpuk_vec_dot_rows_isa(int isa, int type, const void *weights, size_t row_stride, int64_t rows,
                          const void *x, int64_t blocks, float *y);

/// cpuk_vec_dot_rows over up to `threads` threads (the caller's and persistent helpers that spin
/// briefly between calls, then sleep). Calls are serialized; same results as cpuk_vec_dot_rows.
int cpuk_vec_dot_rows_parallel(int type, const void *weights, size_t row_stride, int64_t rows,
                               const void *x, int64_t blocks, float *y, int threads);

/// Prompt batches: y[t·ldy + r] = dot(weight row r, activation row t) for r in 0..<rows and t in
/// 0..<tokens; activation row t (`blocks` blocks in the format cpuk_activation_block(type) names)
/// starts x_stride bytes after row t − 1. Over up to `threads` threads; 0 if `type` has no integer
/// dot. Equal to cpuk_vec_dot_rows per token up to the order of float additions.
int cpuk_gemm_parallel(int type, const void *weights, size_t row_stride, int64_t rows,
                       const void *x, size_t x_stride, int64_t tokens, int64_t blocks,
                       float *y, int64_t ldy, int threads);

/// A task of cpuk_parallel.
typedef void (*cpuk_task_fn)(void *ctx, int task);

/// Runs fn(ctx, task) for every task in 0..<tasks on the same persistent threads as the mat-vecs
/// (the caller's and tasks − 1 helpers; fewer if a thread cannot be created, each then running
/// several tasks in turn), and returns when all are done. One pool for every parallel op: a second
/// set of threads would fight the first for the cores while it spins.
void cpuk_parallel(int tasks, cpuk_task_fn fn, void *ctx);

/// The best path this CPU supports: 0 scalar, 1 AVX2, 2 AVX512-VNNI.
int cpuk_best_isa(void);

#endif
