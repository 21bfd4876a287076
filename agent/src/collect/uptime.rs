//! Seconds since boot, from `/proc/uptime` (`"12345.67 54321.00"`).

use super::{Sources, parse_failed};
use crate::Result;

pub fn collect(src: &Sources) -> Result<u64> {
    let (path, text) = src.read("/proc/uptime")?;
    parse(&text).ok_or_else(|| parse_failed(&path, "uptime seconds"))
}

pub fn parse(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn uptime_is_whole_seconds() {
        assert_eq!(super::parse("12345.67 54321.00\n"), Some(12345));
        assert_eq!(super::parse("garbage"), None);
        assert_eq!(super::parse(""), None);
    }
}
