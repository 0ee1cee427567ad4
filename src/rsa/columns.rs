//! The column sums of product-scanning Montgomery multiplication (`super::montgomery`):
//! dot products of 28-bit limbs.
//!
//! A product of two 28-bit limbs is below 2^56, so a u64 sums 256 of them with no carry to
//! handle per product: the inner loop is loads, multiplies and adds only. In Wasm it runs
//! in SIMD, `i64x2.extmul` making two 32x32 -> 64-bit products per instruction; Envoy's V8
//! runs `simd128`, and only these functions and the multiplication that inlines them use it.

/// Bits per limb.
pub const W: u32 = 28;
pub const MASK: u64 = (1 << W) - 1;
/// Products one u64 sums before it is folded into a wider total: 256 (2^28 - 1)^2 < 2^64.
const CHUNK: usize = 256;

/// Σ x_i y_i over the shorter of the two, for limbs below 2^28, as (lo, hi) with the sum
/// equal to lo + hi 2^28: a column's sums and carry then add up in u64s.
#[inline(always)]
pub fn dot(x: &[u32], y: &[u32]) -> (u64, u64) {
    if x.len() <= CHUNK {
        let sum = dot_chunk(x, y);
        return (sum & MASK, sum >> W);
    }
    // Only moduli over 28 * 256 = 7168 bits have columns this long.
    x.chunks(CHUNK).zip(y.chunks(CHUNK)).fold((0, 0), |(lo, hi), (cx, cy)| {
        let sum = dot_chunk(cx, cy);
        (lo + (sum & MASK), hi + (sum >> W))
    })
}

/// Σ x_i y_i for at most `CHUNK` pairs of limbs below 2^28 (so below 2^64).
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn dot_chunk(x: &[u32], y: &[u32]) -> u64 {
    x.iter().zip(y).map(|(&p, &q)| u64::from(p) * u64::from(q)).sum()
}

/// The same in Wasm SIMD: four products per pair of `i64x2.extmul` (32x32 -> 64 bits per
/// lane), each lane summing up to `CHUNK / 2` of them.
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
fn dot_chunk(x: &[u32], y: &[u32]) -> u64 {
    use core::arch::wasm32::{
        i64x2_add, u32x4, u32x4_splat, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4, u64x2_extract_lane,
        u64x2_splat, v128_and,
    };
    let len = x.len().min(y.len());
    let (x4, x_rest) = x.get(..len).unwrap_or_default().as_chunks::<4>();
    let (y4, y_rest) = y.get(..len).unwrap_or_default().as_chunks::<4>();
    let mut acc = u64x2_splat(0);
    // Masking each loaded vector (a no-op: limbs are below 2^28) keeps LLVM from splitting
    // the loads into `i64x2.load32x2_u` and a full `i64x2.mul`, which V8 emulates on x86 in
    // several instructions where `extmul` is one `pmuludq`.
    let limb = u32x4_splat(MASK as u32);
    for (a, b) in x4.iter().zip(y4) {
        let a = v128_and(u32x4(a[0], a[1], a[2], a[3]), limb);
        let b = v128_and(u32x4(b[0], b[1], b[2], b[3]), limb);
        acc = i64x2_add(acc, u64x2_extmul_low_u32x4(a, b));
        acc = i64x2_add(acc, u64x2_extmul_high_u32x4(a, b));
    }
    let rest: u64 = x_rest.iter().zip(y_rest).map(|(&p, &q)| u64::from(p) * u64::from(q)).sum();
    u64x2_extract_lane::<0>(acc) + u64x2_extract_lane::<1>(acc) + rest
}

/// Column k of a·a (the pairs (i, k - i), i from `from`), as `dot` gives it: the pairs
/// with i < k - i once, doubled, and the middle square a_(k/2)^2 when k is even.
#[inline(always)]
pub fn square_column(a: &[u32], a_rev: &[u32], k: usize, from: usize, s: usize) -> (u64, u64) {
    let half = k.div_ceil(2); // pairs with i < k - i
    let (lo, hi) = if half > from {
        dot(span(a, from, half), span(a_rev, s - 1 + from - k, s - 1 + half - k))
    } else {
        (0, 0)
    };
    let (mut lo, mut hi) = (2 * lo, 2 * hi);
    if k.is_multiple_of(2) {
        if let Some(&x) = a.get(k / 2) {
            let sq = u64::from(x) * u64::from(x);
            lo += sq & MASK;
            hi += sq >> W;
        }
    }
    (lo, hi)
}

/// `x[from..to]`, or nothing if that is not a range of x (it always is: `Modulus::multiply`
/// keeps its column bounds within s).
pub fn span(x: &[u32], from: usize, to: usize) -> &[u32] {
    x.get(from..to).unwrap_or_default()
}
