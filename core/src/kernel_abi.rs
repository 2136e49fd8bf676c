//! The ABI between host code and GPU kernels, written once for WGSL and CUDA C.
//!
//! Two things cross from the host into a kernel besides buffers: op codes (which activation,
//! which binary op, which RoPE pairing, ...) and a parameter struct. Both are defined here, in
//! Rust, and turned into source text that the GPU backends prepend to their shaders and kernels,
//! so the two sides of a call cannot disagree:
//!
//! - [`OpCode`] enums give every code a name; [`wgsl_constants`] and [`c_constants`] emit them as
//!   `const ACT_SILU: u32 = 0u;` and `#define ACT_SILU 0u`. Kernels compare against the names.
//! - [`kernel_params!`](crate::kernel_params) declares a `#[repr(C)]`, [`bytemuck::Pod`] struct
//!   and its [`KernelParams`] impl, whose [`KernelParams::wgsl`] and [`KernelParams::c`] give the
//!   same struct in WGSL and C. A compile-time check refuses padding, so the byte image the host
//!   uploads (or passes to `cuLaunchKernel`) is exactly the struct the kernel reads.

use crate::backend::{Activation, BinaryOp, Broadcast, EpilogueKind, RopePairing, ScatterMode};
use crate::{DType, QuantFormat};

/// An enum whose values are passed to kernels as `u32` codes under shared names.
pub trait OpCode: Copy + PartialEq + 'static {
    /// Every value with its constant name; a value's code is its index here.
    const NAMES: &'static [(Self, &'static str)];
    /// The value's code.
    fn code(self) -> u32 {
        Self::NAMES.iter().position(|&(v, _)| v == self).expect("every value is listed") as u32
    }
}

macro_rules! op_codes {
    ($ty:ident { $($val:ident = $name:literal),* $(,)? }) => {
        impl OpCode for $ty {
            const NAMES: &'static [(Self, &'static str)] = &[$(($ty::$val, $name)),*];
        }
    };
}

op_codes!(Activation { Silu = "ACT_SILU", GeluTanh = "ACT_GELU_TANH", GeluErf = "ACT_GELU_ERF" });
op_codes!(BinaryOp { Add = "BIN_ADD", Sub = "BIN_SUB", Mul = "BIN_MUL" });
op_codes!(RopePairing { Interleaved = "ROPE_INTERLEAVED", HalfSplit = "ROPE_HALF_SPLIT" });
op_codes!(ScatterMode { Assign = "SCATTER_ASSIGN", Add = "SCATTER_ADD" });
op_codes!(EpilogueKind { None = "EPI_NONE", GeluTanh = "EPI_GELU_TANH", GatedResidual = "EPI_GATED_RESIDUAL" });
// The storage dtype of a buffer, for kernels that branch on it at run time (the pack pass).
op_codes!(DType { F32 = "DTYPE_F32", BF16 = "DTYPE_BF16", F16 = "DTYPE_F16" });

/// The code format of a quantized weight (`crate::quant`), as `linear_quantized` kernels branch
/// on it: a [`QuantFormat`] without its block length, which kernels take as a size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantCode {
    Int8,
    Int4,
    Fp8E4M3,
}

op_codes!(QuantCode { Int8 = "QUANT_INT8", Int4 = "QUANT_INT4", Fp8E4M3 = "QUANT_FP8" });

impl From<QuantFormat> for QuantCode {
    fn from(f: QuantFormat) -> QuantCode {
        match f {
            QuantFormat::Int8 { .. } => QuantCode::Int8,
            QuantFormat::Int4 { .. } => QuantCode::Int4,
            QuantFormat::Fp8E4M3 => QuantCode::Fp8E4M3,
        }
    }
}

/// How `b` is indexed against `a` in a binary op, without the extent ([`Broadcast`] carries it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BroadcastMode {
    None,
    Row,
    Col,
}

op_codes!(BroadcastMode { None = "BCAST_NONE", Row = "BCAST_ROW", Col = "BCAST_COL" });

impl Broadcast {
    /// The mode and the inner extent (1 where there is none), as kernels take them.
    pub fn mode_inner(self) -> (BroadcastMode, usize) {
        match self {
            Broadcast::None => (BroadcastMode::None, 1),
            Broadcast::Row { inner } => (BroadcastMode::Row, inner.max(1)),
            Broadcast::Col { inner } => (BroadcastMode::Col, inner.max(1)),
        }
    }
}

fn all_codes() -> Vec<(&'static str, u32)> {
    fn of<T: OpCode>() -> impl Iterator<Item = (&'static str, u32)> {
        T::NAMES.iter().map(|&(v, n)| (n, v.code()))
    }
    of::<Activation>()
        .chain(of::<BinaryOp>())
        .chain(of::<BroadcastMode>())
        .chain(of::<RopePairing>())
        .chain(of::<ScatterMode>())
        .chain(of::<EpilogueKind>())
        .chain(of::<DType>())
        .chain(of::<QuantCode>())
        .collect()
}

/// Every op code as WGSL constants (`const ACT_SILU: u32 = 0u;`).
pub fn wgsl_constants() -> String {
    all_codes().iter().map(|(n, c)| format!("const {n}: u32 = {c}u;\n")).collect()
}

/// Every op code as C macros (`#define ACT_SILU 0u`).
pub fn c_constants() -> String {
    all_codes().iter().map(|(n, c)| format!("#define {n} {c}u\n")).collect()
}

/// A field type a kernel parameter struct may hold: 4- and 8-byte scalars and fixed arrays of
/// them. WGSL has no 64-bit integers, so a struct with a `u64` has no WGSL form.
pub trait AbiField: bytemuck::Pod {
    /// The WGSL type, `None` where WGSL has none.
    fn wgsl() -> Option<String>;
    /// The C declaration of a field `name` of this type (`unsigned int n`, `float a[6]`).
    fn c_decl(name: &str) -> String;
}

macro_rules! abi_scalar {
    ($t:ty, $wgsl:expr, $c:literal) => {
        impl AbiField for $t {
            fn wgsl() -> Option<String> {
                $wgsl.map(String::from)
            }
            fn c_decl(name: &str) -> String {
                format!("{} {name}", $c)
            }
        }
    };
}

abi_scalar!(u32, Some("u32"), "unsigned int");
abi_scalar!(i32, Some("i32"), "int");
abi_scalar!(f32, Some("f32"), "float");
abi_scalar!(u64, None::<&str>, "unsigned long long");

impl<T: AbiField, const N: usize> AbiField for [T; N]
where
    [T; N]: bytemuck::Pod,
{
    fn wgsl() -> Option<String> {
        T::wgsl().map(|t| format!("array<{t}, {N}>"))
    }
    fn c_decl(name: &str) -> String {
        format!("{}[{N}]", T::c_decl(name))
    }
}

/// A kernel parameter struct declared with [`kernel_params!`](crate::kernel_params).
pub trait KernelParams: bytemuck::Pod {
    /// The struct's name, the same in Rust, WGSL and C.
    const NAME: &'static str;
    /// `(field name, WGSL type)` in order; `None` for a field WGSL cannot hold.
    fn wgsl_fields() -> Vec<(&'static str, Option<String>)>;
    /// C declarations of the fields in order.
    fn c_fields() -> Vec<String>;

    /// The WGSL struct declaration. Panics for a struct with a field WGSL has no type for: that
    /// is a programming error in the backend that asked for it, found by its first test.
    fn wgsl() -> String {
        let fields: Vec<String> = Self::wgsl_fields()
            .into_iter()
            .map(|(n, t)| {
                let t = t.unwrap_or_else(|| panic!("{}.{n} has no WGSL type (64-bit)", Self::NAME));
                format!("    {n}: {t},\n")
            })
            .collect();
        format!("struct {} {{\n{}}}\n", Self::NAME, fields.concat())
    }

    /// The C struct declaration (`struct Name { ... };`).
    fn c() -> String {
        let fields: String = Self::c_fields().iter().map(|f| format!("    {f};\n")).collect();
        format!("struct {} {{\n{fields}}};\n", Self::NAME)
    }

    /// The struct's bytes as kernels read them.
    fn bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
}

/// Declares a kernel parameter struct: `#[repr(C)]`, `Pod`, with its WGSL and C declarations
/// ([`KernelParams`]). Fields are [`AbiField`]s; padding is a compile error, so order 8-byte
/// fields first.
///
/// ```
/// joyrt_core::kernel_params! {
///     /// Parameters of an elementwise kernel.
///     pub struct MapParams { pub n: u32, pub op: u32, pub alpha: f32 }
/// }
/// use joyrt_core::kernel_abi::KernelParams;
/// assert!(MapParams::wgsl().contains("alpha: f32"));
/// assert!(MapParams::c().contains("float alpha;"));
/// ```
#[macro_export]
macro_rules! kernel_params {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $fvis:vis $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        $vis struct $name { $($(#[$fm])* $fvis $f: $t),* }

        // No padding anywhere (the sum of the fields is the size), so every byte is a field's
        // byte and the all-Pod fields make the struct Pod.
        const _: () = assert!(
            ::core::mem::size_of::<$name>() == 0 $(+ ::core::mem::size_of::<$t>())*,
            concat!(stringify!($name), " has padding: order its fields by size, largest first")
        );
        // SAFETY: repr(C), no padding (checked above), every field Pod.
        unsafe impl $crate::kernel_abi::reexport::Zeroable for $name {}
        // SAFETY: as above.
        unsafe impl $crate::kernel_abi::reexport::Pod for $name {}

        impl $crate::kernel_abi::KernelParams for $name {
            const NAME: &'static str = stringify!($name);
            fn wgsl_fields() -> ::std::vec::Vec<(&'static str, ::std::option::Option<::std::string::String>)> {
                ::std::vec![$((stringify!($f), <$t as $crate::kernel_abi::AbiField>::wgsl())),*]
            }
            fn c_fields() -> ::std::vec::Vec<::std::string::String> {
                ::std::vec![$(<$t as $crate::kernel_abi::AbiField>::c_decl(stringify!($f))),*]
            }
        }
    };
}

#[doc(hidden)]
pub mod reexport {
    pub use bytemuck::{Pod, Zeroable};
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::kernel_params! {
        struct Sample { big: u64, dims: [u32; 3], alpha: f32 }
    }

    crate::kernel_params! {
        struct Portable { n: u32, k: i32, dims: [u32; 2], scale: f32 }
    }

    #[test]
    fn codes_are_distinct_per_enum_and_match_their_index() {
        fn check<T: OpCode + PartialEq + std::fmt::Debug>() {
            for (i, &(v, _)) in T::NAMES.iter().enumerate() {
                assert_eq!(v.code() as usize, i, "{v:?}");
            }
        }
        check::<Activation>();
        check::<BinaryOp>();
        check::<BroadcastMode>();
        check::<RopePairing>();
        check::<ScatterMode>();
        check::<DType>();
        check::<QuantCode>();
        let names: Vec<_> = all_codes().into_iter().map(|(n, _)| n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names.len(), sorted.len(), "a constant name is used twice");
    }

    #[test]
    fn constants_in_both_languages() {
        assert!(wgsl_constants().contains("const ACT_GELU_ERF: u32 = 2u;\n"));
        assert!(wgsl_constants().contains("const ROPE_HALF_SPLIT: u32 = 1u;\n"));
        assert!(c_constants().contains("#define BIN_MUL 2u\n"));
        assert!(c_constants().contains("#define DTYPE_BF16 1u\n"));
    }

    #[test]
    fn structs_in_both_languages_with_the_host_layout() {
        assert_eq!(std::mem::size_of::<Sample>(), 8 + 12 + 4);
        assert_eq!(
            Sample::c(),
            "struct Sample {\n    unsigned long long big;\n    unsigned int dims[3];\n    float alpha;\n};\n"
        );
        assert_eq!(
            Portable::wgsl(),
            "struct Portable {\n    n: u32,\n    k: i32,\n    dims: array<u32, 2>,\n    scale: f32,\n}\n"
        );
        let p = Portable { n: 7, k: -1, dims: [2, 3], scale: 0.5 };
        let b = p.bytes();
        assert_eq!(b.len(), 20);
        assert_eq!(&b[0..4], &7u32.to_le_bytes());
        assert_eq!(&b[16..20], &0.5f32.to_le_bytes());
    }

    #[test]
    #[should_panic(expected = "no WGSL type")]
    fn a_64_bit_field_has_no_wgsl_form() {
        let _ = Sample::wgsl();
    }

    #[test]
    fn broadcast_modes() {
        assert_eq!(Broadcast::None.mode_inner(), (BroadcastMode::None, 1));
        assert_eq!(Broadcast::Row { inner: 7 }.mode_inner(), (BroadcastMode::Row, 7));
        assert_eq!(Broadcast::Col { inner: 0 }.mode_inner(), (BroadcastMode::Col, 1));
    }
}
