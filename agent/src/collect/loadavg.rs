//! Load averages from `/proc/loadavg` (`"0.50 0.25 0.12 1/123 4567"`).

use super::{Sources, parse_failed};
use crate::Result;
use crate::report::Load;

pub fn collect(src: &Sources) -> Result<Load> {
    let (path, text) = src.read("/proc/loadavg")?;
    parse(&text).ok_or_else(|| parse_failed(&path, "load averages"))
}

pub fn parse(text: &str) -> Option<Load> {
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    Some(Load {
        one: it.next()?.ok()?,
        five: it.next()?.ok()?,
        fifteen: it.next()?.ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_reads_the_three_averages() {
        let l = parse("0.50 0.25 1.75 1/123 4567\n").expect("parses");
        assert_eq!(
            l,
            Load {
                one: 0.5,
                five: 0.25,
                fifteen: 1.75
            }
        );
        assert_eq!(parse("0.50 0.25"), None);
        assert_eq!(parse("a b c"), None);
    }
}
