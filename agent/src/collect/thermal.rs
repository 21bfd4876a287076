//! SoC temperature from thermal zone 0 (millidegrees Celsius). On a Pi that
//! zone is the SoC (`cpu-thermal`); without it the field is simply absent.

use super::{Sources, parse_failed};
use crate::Result;

pub const PATH: &str = "/sys/class/thermal/thermal_zone0/temp";

pub fn collect(src: &Sources) -> Result<Option<f64>> {
    let Some((path, text)) = src.read_optional(PATH)? else {
        return Ok(None);
    };
    let milli: i64 = text
        .trim()
        .parse()
        .map_err(|_| parse_failed(&path, "millidegrees"))?;
    Ok(Some(milli as f64 / 1000.0))
}
