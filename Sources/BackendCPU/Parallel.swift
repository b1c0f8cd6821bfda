import CPUKernels

/// Splits work over a fixed number of threads: CPUKernels' persistent pool, the one the integer
/// mat-vecs use, so every parallel op of the backend runs on the same threads (a second pool, such
/// as libdispatch's, would fight the first for the cores while its threads spin between calls).
struct Parallel {
    let threads: Int

    /// Calls `body(range)` for contiguous slices of `0..<count`, each a multiple of `granularity`
    /// (but the last), on up to `threads` threads. Small jobs stay on the calling thread.
    func forEach(_ count: Int, granularity: Int = 1, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let units = (count + granularity - 1) / granularity
        let workers = min(threads, units, max(1, count / max(minimumPerThread, 1)))
        if workers <= 1 {
            body(0..<count)
            return
        }
        let unitsPerWorker = (units + workers - 1) / workers
        run(workers) { worker in
            let lower = worker * unitsPerWorker * granularity
            let upper = min(count, lower + unitsPerWorker * granularity)
            if lower < upper { body(lower..<upper) }
        }
    }

    /// Calls `body(index, worker)` for every index, with `worker` < threads naming a per-thread scratch slot.
    func forEachIndexed(_ count: Int, _ body: (Int, Int) -> Void) {
        guard count > 0 else { return }
        let workers = min(threads, count)
        if workers <= 1 {
            for i in 0..<count { body(i, 0) }
            return
        }
        let per = (count + workers - 1) / workers
        run(workers) { worker in
            for i in (worker * per)..<min(count, (worker + 1) * per) { body(i, worker) }
        }
    }

    /// `task(t)` for t in 0..<tasks on the pool; no two calls share a `t`.
    private func run(_ tasks: Int, _ task: (Int) -> Void) {
        withoutActuallyEscaping(task) { task in
            var box = TaskBox(task: task)
            withUnsafeMutablePointer(to: &box) { pointer in
                cpuk_parallel(Int32(tasks), { context, t in
                    context!.assumingMemoryBound(to: TaskBox.self).pointee.task(Int(t))
                }, pointer)
            }
        }
    }
}

private struct TaskBox {
    let task: (Int) -> Void
}
