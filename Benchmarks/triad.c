// STREAM-style triad a[i] = b[i] + s·c[i] over arrays far larger than the caches, on N threads
// (pthreads), reporting the best of several runs in GB/s counting 3 × 8-byte doubles per element
// (two reads, one write), as STREAM does.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N (32L * 1024 * 1024)   // 256 MiB per array
static double *a, *b, *c;
static int threads;

static void *work(void *arg) {
    long t = (long)arg, lo = N * t / threads, hi = N * (t + 1) / threads;
    for (long i = lo; i < hi; i++) a[i] = b[i] + 3.0 * c[i];
    return NULL;
}

static void *init(void *arg) {   // first touch on the thread that will use the pages
    long t = (long)arg, lo = N * t / threads, hi = N * (t + 1) / threads;
    for (long i = lo; i < hi; i++) { a[i] = 0; b[i] = 1; c[i] = 2; }
    return NULL;
}

static void run(void *(*f)(void *)) {
    pthread_t ids[64];
    for (long t = 0; t < threads; t++) pthread_create(&ids[t], NULL, f, (void *)t);
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
}

int main(int argc, char **argv) {
    threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 64) return 2;
    a = malloc(N * sizeof(double)); b = malloc(N * sizeof(double)); c = malloc(N * sizeof(double));
    if (!a || !b || !c) return 1;
    run(init);
    double best = 0;
    for (int r = 0; r < 8; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        run(work);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        double gbs = 3.0 * N * sizeof(double) / s / 1e9;
        if (gbs > best) best = gbs;
    }
    printf("%.2f\n", best);
    return a[N / 2] == 7.0 ? 0 : 3;   // use the result
}
