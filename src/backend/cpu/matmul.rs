//! Row-major f32 matrix products on the `gemm` crate (strides express transposes for free).

/// Threading of one product: on the caller's thread, or split by `gemm` over the current rayon
/// pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Par {
    /// On the calling thread.
    Seq,
    /// Split by `gemm` over the current rayon pool.
    Rayon,
}

/// A row-major matrix view: pointer-free description of rows, columns and strides.
#[derive(Debug, Clone, Copy)]
pub struct MatLayout {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row stride in elements.
    pub rs: isize,
    /// Column stride in elements.
    pub cs: isize,
}

impl MatLayout {
    /// A contiguous row-major `rows` x `cols` matrix.
    pub fn row_major(rows: usize, cols: usize) -> MatLayout {
        MatLayout {
            rows,
            cols,
            rs: cols as isize,
            cs: 1,
        }
    }

    /// The transpose of a contiguous row-major `cols` x `rows` matrix.
    pub fn transposed(rows: usize, cols: usize) -> MatLayout {
        MatLayout {
            rows,
            cols,
            rs: 1,
            cs: rows as isize,
        }
    }

    fn max_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        ((self.rows - 1) as isize * self.rs + (self.cols - 1) as isize * self.cs) as usize + 1
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`), `a` m x k, `b` k x n, `c` m x n row-major
/// contiguous. Panics if a slice is too short for its layout.
pub fn matmul(
    a: &[f32],
    la: MatLayout,
    b: &[f32],
    lb: MatLayout,
    c: &mut [f32],
    accumulate: bool,
    par: Par,
) {
    let (m, k, n) = (la.rows, la.cols, lb.cols);
    assert_eq!(lb.rows, k, "inner dimensions");
    assert!(a.len() >= la.max_index() && b.len() >= lb.max_index() && c.len() >= m * n);
    let parallelism = match par {
        Par::Seq => gemm::Parallelism::None,
        Par::Rayon => gemm::Parallelism::Rayon(0),
    };
    // SAFETY: every index the layouts reach is inside the slices (checked above); c does not
    // alias a or b (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            la.cs,
            la.rs,
            b.as_ptr(),
            lb.cs,
            lb.rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_and_transpose() {
        // a = [[1,2,3],[4,5,6]], b = [[1,0],[0,1],[1,1]]
        let a = [1., 2., 3., 4., 5., 6.];
        let b = [1., 0., 0., 1., 1., 1.];
        let mut c = [0.0f32; 4];
        matmul(
            &a,
            MatLayout::row_major(2, 3),
            &b,
            MatLayout::row_major(3, 2),
            &mut c,
            false,
            Par::Seq,
        );
        assert_eq!(c, [4., 5., 10., 11.]);
        // aᵀ·a' where a' is a viewed transposed: (3x2)·(2x3)
        let mut d = [0.0f32; 9];
        matmul(
            &a,
            MatLayout::transposed(3, 2),
            &a,
            MatLayout::row_major(2, 3),
            &mut d,
            false,
            Par::Seq,
        );
        assert_eq!(d, [17., 22., 27., 22., 29., 36., 27., 36., 45.]);
        matmul(
            &a,
            MatLayout::row_major(2, 3),
            &b,
            MatLayout::row_major(3, 2),
            &mut c,
            true,
            Par::Rayon,
        );
        assert_eq!(c, [8., 10., 20., 22.]);
    }
}
