//! The board model from the device tree (`Raspberry Pi 4 Model B Rev 1.4`),
//! a NUL-terminated string. Absent on boards without a device tree.

use super::Sources;
use crate::Result;

pub const PATHS: [&str; 2] = [
    "/proc/device-tree/model",
    "/sys/firmware/devicetree/base/model",
];

pub fn collect(src: &Sources) -> Result<Option<String>> {
    for rel in PATHS {
        if let Some((_, text)) = src.read_optional(rel)? {
            let model = text.trim_end_matches(['\0', '\n', ' ']).trim();
            if !model.is_empty() {
                return Ok(Some(model.to_owned()));
            }
        }
    }
    Ok(None)
}
