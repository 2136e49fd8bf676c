//! Tensor maps for Hopper's tensor memory accelerator: the 128-byte descriptor a kernel receives
//! by value (`const __grid_constant__ CUtensorMap`) and reads tiles through. On a GPU the driver
//! encodes it (`cuTensorMapEncodeTiled`); in the emulation [`encode_emulated`] writes the words
//! `emu/cuda_emu_async.hpp` decodes. Both refuse, with the reason, the maps the driver documents
//! as invalid, so a shape the GPU would refuse fails the emulated suite too.

use cudarc::driver::sys::{self as cu, CUresult};
use joyrt_core::DType;

/// The descriptor as a kernel parameter (CUDA's `CUtensorMap`: 128 bytes, 64-aligned).
pub type TensorMap = cu::CUtensorMap;

/// A row-major matrix of 16-bit elements read in boxes of `box_rows` × `box_cols`, landing in
/// shared memory with the 128-byte swizzle (`box_cols` × 2 bytes = one 128-byte row), zero
/// outside the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileMap {
    pub address: u64,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub box_rows: u32,
    pub box_cols: u32,
}

/// `CU_TENSOR_MAP_SWIZZLE_128B`.
const SWIZZLE_128B: u64 = 3;
/// The emulation's tag in the first word (`emu_tensor_map_magic`).
const EMU_MAGIC: u64 = 0x4a54_4d31;

impl TileMap {
    /// Why the driver would refuse this map (cuTensorMapEncodeTiled's documented requirements
    /// for a 2-D tiled map with the 128-byte swizzle), if it would.
    pub fn refusal(&self) -> Option<String> {
        let elem = self.dtype.size() as u64;
        let row_bytes = self.cols as u64 * elem;
        if elem != 2 {
            return Some(format!("a {} matrix: the tile maps here hold 16-bit elements", self.dtype));
        }
        if !self.address.is_multiple_of(16) {
            return Some(format!("the global address {:#x} is not 16-byte aligned", self.address));
        }
        if self.rows == 0 || self.cols == 0 || self.rows as u64 > 1 << 32 || self.cols as u64 > 1 << 32 {
            return Some(format!(
                "a {} × {} matrix: each dimension must be 1 ..= 2^32",
                self.rows, self.cols
            ));
        }
        if !row_bytes.is_multiple_of(16) || row_bytes >= 1 << 40 {
            return Some(format!(
                "rows of {row_bytes} bytes: the row stride must be a multiple of 16 below 2^40"
            ));
        }
        if !(1..=256).contains(&self.box_rows) || !(1..=256).contains(&self.box_cols) {
            return Some(format!("a {} × {} box: each side must be 1 ..= 256", self.box_rows, self.box_cols));
        }
        if self.box_cols as u64 * elem > 128 {
            return Some(format!(
                "box rows of {} bytes: the 128-byte swizzle takes at most 128",
                self.box_cols as u64 * elem
            ));
        }
        None
    }

    /// The box size in bytes: what one copy completes on its barrier.
    pub fn box_bytes(&self) -> u32 {
        self.box_rows * self.box_cols * self.dtype.size() as u32
    }
}

/// The map encoded by the driver.
pub(crate) fn encode_gpu(map: &TileMap) -> Result<TensorMap, String> {
    if let Some(why) = map.refusal() {
        return Err(why);
    }
    // SAFETY: the driver library is loaded (the device is open); a lookup has no side effect.
    if unsafe { cu::culib().get::<*const ()>(b"cuTensorMapEncodeTiled") }.is_err() {
        return Err("the CUDA driver lacks cuTensorMapEncodeTiled (CUDA 12.0 or newer is needed)".into());
    }
    let data_type = match map.dtype {
        DType::BF16 => cu::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        _ => cu::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
    };
    let dims = [map.cols as u64, map.rows as u64];
    let strides = [map.cols as u64 * 2];
    let boxes = [map.box_cols, map.box_rows];
    let element_strides = [1u32, 1];
    let mut out = TensorMap { opaque: [0; 16] };
    // SAFETY: every pointer addresses a live array of the rank the call is told (strides: rank −
    // 1 entries); the global address is only recorded, not dereferenced.
    let r = unsafe {
        cu::cuTensorMapEncodeTiled(
            &mut out,
            data_type,
            2,
            map.address as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            element_strides.as_ptr(),
            cu::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            cu::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            cu::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            cu::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if r != CUresult::CUDA_SUCCESS {
        return Err(format!("cuTensorMapEncodeTiled({map:?}): {r:?}"));
    }
    Ok(out)
}

/// The map as the emulation reads it (`EmuTensorMap` in emu/cuda_emu_async.hpp): word 0 the tag
/// and the element bytes, then the address, the elements per row, the rows, the row stride in
/// bytes, the box (elements per row, rows) and the swizzle.
pub(crate) fn encode_emulated(map: &TileMap) -> Result<TensorMap, String> {
    if let Some(why) = map.refusal() {
        return Err(why);
    }
    let elem = map.dtype.size() as u64;
    let mut opaque = [0u64; 16];
    opaque[0] = EMU_MAGIC | elem << 32;
    opaque[1] = map.address;
    opaque[2] = map.cols as u64;
    opaque[3] = map.rows as u64;
    opaque[4] = map.cols as u64 * elem;
    opaque[5] = map.box_cols as u64 | (map.box_rows as u64) << 32;
    opaque[6] = SWIZZLE_128B;
    Ok(TensorMap { opaque })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> TileMap {
        TileMap { address: 0x1000, dtype: DType::BF16, rows: 300, cols: 72, box_rows: 128, box_cols: 64 }
    }

    #[test]
    fn the_driver_s_requirements_are_checked_before_encoding() {
        assert_eq!(map().refusal(), None);
        assert_eq!(map().box_bytes(), 128 * 64 * 2);
        let refused = |m: TileMap, what: &str| {
            let why = m.refusal().expect("refused");
            assert!(why.contains(what), "{why}");
            assert_eq!(encode_emulated(&m).unwrap_err(), why);
        };
        refused(TileMap { address: 0x1008, ..map() }, "16-byte aligned");
        refused(TileMap { cols: 70, ..map() }, "multiple of 16");
        refused(TileMap { box_rows: 257, ..map() }, "1 ..= 256");
        refused(TileMap { box_cols: 128, ..map() }, "at most 128");
        refused(TileMap { dtype: DType::F32, ..map() }, "16-bit");
        refused(TileMap { rows: 0, ..map() }, "each dimension");
        let words = encode_emulated(&map()).unwrap().opaque;
        assert_eq!(words[..7], [EMU_MAGIC | 2 << 32, 0x1000, 72, 300, 144, 64 | 128 << 32, 3]);
    }
}
