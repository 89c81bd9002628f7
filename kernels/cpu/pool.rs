/*! Splitting work across candle's CPU worker pool.

[`parallel`] runs a closure over index ranges on `candle_core::utils::barrier_pool()` (the pool
candle's own quantized matmuls use, so pagemind never adds threads of its own), or inline when
the work is too small to pay for waking the pool. [`SharedMut`] is the raw output pointer the
workers write their disjoint ranges through.
*/

/// Run `f` over `0..n`: split across the pool if `worth_it` and `n > 1`, else on this thread.
pub fn parallel(n: usize, worth_it: bool, f: impl Fn(std::ops::Range<usize>) + Sync) {
    if !worth_it || n < 2 {
        f(0..n);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(n, f);
    }
}

/// A pointer that worker threads write disjoint parts of one buffer through.
#[derive(Clone, Copy)]
pub struct SharedMut<T>(pub *mut T);
// SAFETY: callers give each worker its own indices (every use states which).
unsafe impl<T> Sync for SharedMut<T> {}
unsafe impl<T> Send for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer moved by `i` elements (a method, so closures capture the `Sync` wrapper, not
    /// its raw field).
    ///
    /// # Safety
    /// `i` must be in bounds of the allocation the pointer came from (as for `pointer::add`).
    pub unsafe fn at(self, i: usize) -> *mut T {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(i) }
    }
}
