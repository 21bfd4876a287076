//! The firmware's throttling word. The kernel exposes it in sysfs (readable by
//! the sandboxed service); `vcgencmd get_throttled` is the fallback on older
//! kernels and needs `/dev/vchiq`, so it is tried only when installed.

use super::{Sources, parse_failed};
use crate::Result;
use crate::report::Throttling;

pub const PATH: &str = "/sys/devices/platform/soc/soc:firmware/get_throttled";

pub fn collect(src: &Sources) -> Result<Option<Throttling>> {
    if let Some((path, text)) = src.read_optional(PATH)? {
        let raw = parse(&text).ok_or_else(|| parse_failed(&path, "get_throttled word"))?;
        return Ok(Some(Throttling::from_raw(raw)));
    }
    // Not a Pi, or vcgencmd absent/unusable: nothing to report, not an error.
    Ok(src
        .exec
        .stdout("vcgencmd", &["get_throttled"])
        .ok()
        .and_then(|out| parse(&out))
        .map(Throttling::from_raw))
}

/// Accepts `0x50005`, `50005` (sysfs) and `throttled=0x50005` (vcgencmd).
pub fn parse(text: &str) -> Option<u32> {
    let t = text.trim();
    let t = t.strip_prefix("throttled=").unwrap_or(t);
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u32::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn get_throttled_formats_all_parse() {
        assert_eq!(super::parse("0x50005\n"), Some(0x50005));
        assert_eq!(super::parse("50005\n"), Some(0x50005));
        assert_eq!(super::parse("throttled=0x0\n"), Some(0));
        assert_eq!(super::parse("nope"), None);
    }
}
