//! Checking a prepared split before training starts: every image and saliency map exists, its
//! header is readable and within the pixel budget, and each map has its image's size.
//!
//! Only headers are read (no pixel is decoded), so checking ISIC2018's 10,015 images takes seconds;
//! a missing or corrupt validation image is reported before epoch 1 instead of after it.

use std::path::Path;

use rayon::prelude::*;
use saliency::decode::{image_file_dimensions, DecodeLimits};

use crate::data_set::DataSet;
use crate::error::{DatasetError, Result};

/// Checks the files of `data`, the `split` split (`train`, `val`, `test`) of a split folder;
/// with `with_saliency`, its maps too. The error names the split, the CSV row (1-based line, the
/// header is line 1), the image id and the file at fault; the first bad row in file order is
/// reported.
pub fn check_split_files(data: &DataSet, split: &str, with_saliency: bool) -> Result<()> {
    let limits = data.decode_limits();
    let first_bad = data
        .items()
        .par_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let fail = |message: String| DatasetError::SplitFile {
                split: split.to_owned(),
                row: i as u64 + 2,
                image: item.image.clone(),
                message,
            };
            let image_size = match header_size(&item.path, &limits) {
                Ok(size) => size,
                Err(message) => return Some((i, fail(message))),
            };
            if with_saliency {
                match header_size(&item.saliency, &limits) {
                    Ok(map_size) if map_size != image_size => {
                        return Some((
                            i,
                            fail(format!(
                                "saliency map {} is {}x{} but the image {} is {}x{}",
                                item.saliency.display(),
                                map_size.0,
                                map_size.1,
                                item.path.display(),
                                image_size.0,
                                image_size.1
                            )),
                        ))
                    }
                    Ok(_) => {}
                    Err(message) => return Some((i, fail(message))),
                }
            }
            None
        })
        .min_by_key(|(i, _)| *i);
    match first_bad {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// (width, height) from the header of `path`, or a message naming the file.
fn header_size(path: &Path, limits: &DecodeLimits) -> std::result::Result<(u32, u32), String> {
    if !path.is_file() {
        return Err(format!("{} does not exist", path.display()));
    }
    image_file_dimensions(path, limits).map_err(|e| e.to_string())
}
