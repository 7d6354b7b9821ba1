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
half_elem!(bf16);
half_elem!(f16);
