//! Memory and swap from `/proc/meminfo` (values in kB).

use super::{Sources, parse_failed};
use crate::Result;
use crate::report::{Memory, Swap};

pub fn collect(src: &Sources) -> Result<(Memory, Swap)> {
    let (path, text) = src.read("/proc/meminfo")?;
    parse(&text).ok_or_else(|| parse_failed(&path, "MemTotal/MemAvailable"))
}

/// `MemTotal` and `MemAvailable` are required (Linux >= 3.14 has both); swap
/// lines are absent on kernels built without swap, which reads as no swap.
pub fn parse(text: &str) -> Option<(Memory, Swap)> {
    let (mut total, mut available, mut swap_total, mut swap_free) = (None, None, None, None);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "SwapTotal" => &mut swap_total,
            "SwapFree" => &mut swap_free,
            _ => continue,
        };
        let mut words = rest.split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        let scale = match words.next() {
            Some("kB") => 1024,
            None => 1,
            Some(_) => return None,
        };
        *slot = Some(value.saturating_mul(scale));
    }
    Some((
        Memory {
            total_bytes: total?,
            available_bytes: available?,
        },
        Swap {
            total_bytes: swap_total.unwrap_or(0),
            free_bytes: swap_free.unwrap_or(0),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_converts_kb_to_bytes() {
        let text = "MemTotal:        3884096 kB\nMemFree:          100000 kB\n\
                    MemAvailable:    2000000 kB\nSwapTotal:        102396 kB\nSwapFree:          51198 kB\n";
        let (m, s) = parse(text).expect("parses");
        assert_eq!(
            m,
            Memory {
                total_bytes: 3_884_096 * 1024,
                available_bytes: 2_000_000 * 1024
            }
        );
        assert_eq!(
            s,
            Swap {
                total_bytes: 102_396 * 1024,
                free_bytes: 51_198 * 1024
            }
        );
    }

    #[test]
    fn meminfo_without_memavailable_is_refused() {
        assert_eq!(parse("MemTotal: 10 kB\n"), None);
        assert_eq!(parse("MemTotal: x kB\nMemAvailable: 1 kB\n"), None);
    }
}
