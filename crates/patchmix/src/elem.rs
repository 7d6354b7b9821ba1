//! Element types of the CPU kernels: storage type `Self`, arithmetic in `Self::Acc`
//! (f32 for f32/bf16/f16, f64 for f64), so half-precision inputs are rounded once, at the store.

use half::{bf16, f16};
use std::ops::{Add, Mul, Sub};

pub(crate) trait Elem: Copy + Send + Sync + 'static {
    type Acc: Copy
        + Send
        + Sync
        + PartialOrd
        + Add<Output = Self::Acc>
        + Sub<Output = Self::Acc>
        + Mul<Output = Self::Acc>;
    const ZERO: Self::Acc;
    const ONE: Self::Acc;
    fn to_acc(self) -> Self::Acc;
    fn from_acc(a: Self::Acc) -> Self;
    fn acc_to_f32(a: Self::Acc) -> f32;
    fn acc_from_f32(a: f32) -> Self::Acc;
}

impl Elem for f32 {
    type Acc = f32;
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_acc(a: f32) -> Self {
        a
    }
    #[inline(always)]
    fn acc_to_f32(a: f32) -> f32 {
        a
    }
    #[inline(always)]
    fn acc_from_f32(a: f32) -> f32 {
        a
    }
}

impl Elem for f64 {
    type Acc = f64;
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    #[inline(always)]
    fn to_acc(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_acc(a: f64) -> Self {
        a
    }
    #[inline(always)]
    fn acc_to_f32(a: f64) -> f32 {
        a as f32
    }
    #[inline(always)]
    fn acc_from_f32(a: f32) -> f64 {
        a as f64
    }
}

macro_rules! half_elem {
    ($t:ty) => {
        impl Elem for $t {
            type Acc = f32;
            const ZERO: f32 = 0.0;
            const ONE: f32 = 1.0;
            #[inline(always)]
            fn to_acc(self) -> f32 {
                self.to_f32()
            }
            #[inline(always)]
            fn from_acc(a: f32) -> Self {
                <$t>::from_f32(a)
            }
            #[inline(always)]
            fn acc_to_f32(a: f32) -> f32 {
                a
            }
            #[inline(always)]
            fn acc_from_f32(a: f32) -> f32 {
                a
            }
        }
    };
}

impl Elem for bf16 {
    type Acc = f32;
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    /// Round to nearest even with NaN kept NaN, as `bf16::from_f32`, but branch-free so the
    /// store loops vectorise (the `half` version branches per element).
    #[inline(always)]
    fn from_acc(a: f32) -> Self {
        let u = a.to_bits();
        let rounded = (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16;
        let nan = ((u >> 16) | 0x40) as u16;
        bf16::from_bits(if (u & 0x7fff_ffff) > 0x7f80_0000 {
            nan
        } else {
            rounded
        })
    }
    #[inline(always)]
    fn acc_to_f32(a: f32) -> f32 {
        a
    }
    #[inline(always)]
    fn acc_from_f32(a: f32) -> f32 {
        a
    }
}
half_elem!(f16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_free_bf16_rounding_matches_the_half_crate() {
        let specials = [
            0.0f32,
            -0.0,
            1.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::INFINITY,
            -f32::INFINITY,
        ];
        let mut x = 0x1234_5678u32;
        let many = (0..200_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            f32::from_bits(x)
        });
        for v in specials.into_iter().chain(many) {
            let want = bf16::from_f32(v);
            let got = <bf16 as Elem>::from_acc(v);
            if v.is_nan() {
                assert!(got.is_nan());
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{v:e}");
            }
            assert_eq!(
                <bf16 as Elem>::to_acc(want).to_bits(),
                want.to_f32().to_bits()
            );
        }
    }
}
